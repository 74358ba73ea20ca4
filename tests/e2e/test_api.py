"""The README's Python API example runs as written, and the API's tables are typed."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from federates.common.errors import ConfigError
from runner import api

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    res = namespace["res"]
    assert res.run_dir == (tmp_path / "runs" / "api-demo").resolve()
    assert res.kpis["prosumers"] == 40 and res.kpis["mode"] == "full"
    trades = res.table("trades")
    assert len(trades) > 0
    assert trades["layer"].dtype == "int64" and pd.api.types.is_string_dtype(trades["buyer"])
    assert str(trades["timestamp"].dt.tz) == "America/Chicago" and trades["time_s"].min() >= 0
    assert pd.api.types.is_float_dtype(trades["energy_kwh"])
    assert res.table("feeder_steps")["converged"].dtype == bool
    again = api.load(res.run_dir)
    assert again.kpis == res.kpis
    # the table recomputes the figure kpis.json reports
    assert trades.loc[trades.layer == 1, "energy_kwh"].sum() == pytest.approx(res.kpis["p2p_energy_kwh"])


def test_bad_input_through_the_api_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="hours"):
        api.scenario(hours=-1)
    with pytest.raises(ConfigError, match="kpis.json"):
        api.load(tmp_path)
    run = api.Run(tmp_path)
    with pytest.raises(ConfigError, match="unknown"):
        run.table("nope")
