"""Each federate process imports only the heavy libraries it uses (its start-up CPU): checked in fresh interpreters,
since this test process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from federates.common.imports import lazy_module

HEAVY = ("pandas", "pyarrow", "pyomo.environ", "scipy", "scipy.stats", "scipy.signal", "pvlib", "yaml")


def _loaded_after(code: str) -> dict[str, bool]:
    """Which of HEAVY a fresh interpreter has imported after running ``code`` (which may print before)."""
    script = textwrap.dedent(code) + f"\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY}}}))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("kind, needs", [
    ("iso", {"pyomo.environ"}),        # clears its LP with Pyomo; pandas only to read a price or regulation file
    ("vpp_market", set()),             # Pyomo only with the bilateral mechanism, at its first clearing
    ("vpp", set()),                    # its offer MILP goes straight into highspy; Pyomo as vpp_market's
    ("transmission", {"scipy"}),       # PYPOWER
])
def test_a_federate_imports_only_what_it_uses(kind, needs):
    loaded = _loaded_after(f"import federates.{kind}.federate")
    assert {m for m, yes in loaded.items() if yes} == needs


@pytest.mark.parametrize("first", ["file", "model"])
def test_a_prosumer_federate_makes_profiles_and_plans_without_scipy_stats(tmp_path, first):
    """Pyomo's import hook would import scipy.stats with the first scipy import (pvlib's, the load model's
    scipy.special, the HEMS's scipy.sparse); no profile needs scipy.signal or scipy.stats. The first home's profiles
    import scipy first: through pvlib if its load is a file, else through the load model."""
    load_csv = tmp_path / "load.csv"
    load_csv.write_text("time,p_kw\n" + "".join(f"{300 * k},0.5\n" for k in range(13)))
    loaded = _loaded_after(f"""
        from datetime import datetime
        import federates.prosumer.federate  # Pyomo first, as in the federate
        from federates.prosumer.devices import (BatteryConfig, LoadConfig, Location, ProsumerConfig, PvConfig,
                                                TariffConfig, TouPeriod)
        from federates.prosumer.fleet import ProsumerFleet
        tariff = TariffConfig(retail_tou=[TouPeriod(start_h=0, price_per_kwh=0.2)], buyback_price_per_kwh=0.05)
        battery = BatteryConfig(capacity_kwh=10, p_max_kw=5)
        homes = [ProsumerConfig(name="file", load=LoadConfig(csv={str(load_csv)!r}), pv=PvConfig(kwp=5)),
                 ProsumerConfig(name="model", pv=PvConfig(kwp=5), battery=battery)]
        homes = homes if {first!r} == "file" else homes[::-1]
        fleet = ProsumerFleet(homes, tariff, Location(latitude_deg=35, longitude_deg=-97), datetime(2024, 6, 21),
                              n_steps=12, horizon_slots=4)
        fleet.plan(0.0, 0)
    """)
    assert loaded["pvlib"] and loaded["scipy"] and loaded["pyomo.environ"]  # the paths that would pull it in ran
    assert not loaded["scipy.stats"] and not loaded["scipy.signal"]


def test_lazy_module_imports_at_first_attribute_read():
    loaded = _loaded_after("""
        from federates.common.imports import lazy_module
        yaml = lazy_module("yaml")
        assert repr(yaml) and not hasattr(yaml, "__wrapped__")  # introspection does not import
        import sys
        assert "yaml" not in sys.modules
    """)
    assert not loaded["yaml"]
    loaded = _loaded_after("""
        from federates.common.imports import lazy_module
        assert lazy_module("yaml").safe_load("a: 1") == {"a": 1}
    """)
    assert loaded["yaml"]
    assert lazy_module("json") is json  # an imported module is returned as it is
