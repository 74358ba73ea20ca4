"""configs/federation.json is what `helics run --path configs/federation.json` runs: it must be complete."""

import json
from pathlib import Path

from federates.common.wiring import (
    FeederFederate,
    IsoFederate,
    ProsumerFederate,
    VppFederate,
    VppMarketFederate,
    check_wiring,
    load_federate_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
KINDS = {"feeder": FeederFederate, "prosumer": ProsumerFederate, "vpp": VppFederate, "iso": IsoFederate,
         "vpp_market": VppMarketFederate}


def test_committed_federation_is_complete_and_wired():
    runner = json.loads((CONFIGS / "federation.json").read_text())
    entries = {e["name"]: e for e in runner["federates"]}
    broker = entries.pop("broker")
    assert f"-f {len(entries)} " in broker["exec"]
    configs = []
    for name, entry in entries.items():
        path = CONFIGS / entry["exec"].split("--config ")[1]
        kind = json.loads(path.read_text())["runtime"]["kind"]
        cfg = load_federate_config(path, KINDS[kind])
        assert cfg.runtime.name == name and f"python -m federates.{kind} " in entry["exec"]
        feeder = getattr(cfg, "feeder", None)
        if kind == "feeder":
            assert feeder.master.is_file(), "feeder paths are relative to the config and must resolve"
        configs.append(cfg)
    check_wiring(configs)
    assert {c.runtime.kind for c in configs} == set(KINDS)


def _shape(value):
    """The structure of a JSON value: field names all the way down, not their values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return None


def test_committed_federation_is_what_a_build_of_the_default_scenario_writes_today(tmp_path):
    """A stale commit (old keys, missing fields) passes check_wiring on its own but fails under `helics run`: the
    committed configs must have the keys, fields and broker options a fresh build gives (paths aside)."""
    from federates.common.config import load_scenario
    from runner.build import build

    committed = json.loads((CONFIGS / "federation.json").read_text())
    per_federate = max(len(json.loads((CONFIGS / "federates" / f"{e['name']}.json").read_text())["prosumers"])
                       for e in committed["federates"] if e["name"].startswith("prosumers_"))
    scenario = load_scenario(CONFIGS / "scenarios" / "default.yaml",
                             [f"federation.prosumers_per_federate={per_federate}"])
    fresh_json, _, _ = build(scenario, tmp_path, broker_port=committed_port(committed), portable=True,
                             broker_key=False)
    fresh = json.loads(fresh_json.read_text())
    assert [e["name"] for e in fresh["federates"]] == [e["name"] for e in committed["federates"]]
    assert fresh["federates"][0]["exec"] == committed["federates"][0]["exec"], "rebuild: see README"
    for entry in committed["federates"][1:]:
        mine = json.loads((CONFIGS / "federates" / f"{entry['name']}.json").read_text())
        new = json.loads((tmp_path / "federates" / f"{entry['name']}.json").read_text())
        assert mine["runtime"]["publications"] == new["runtime"]["publications"], entry["name"]
        assert mine["runtime"]["subscriptions"] == new["runtime"]["subscriptions"], entry["name"]
        assert _shape(mine) == _shape(new), f"{entry['name']}: fields differ from a fresh build; rebuild configs"


def committed_port(runner: dict) -> int:
    return int(runner["federates"][0]["exec"].split("--port=", 1)[1].split()[0])


def test_collect_finds_the_results_folder_a_build_was_given(tmp_path):
    """`harmony collect configs` after `helics run --path configs/federation.json`: the parts are in the
    build's --results folder (runs/federation), not beside the configs."""
    from federates.common.config import load_scenario
    from runner.build import build
    from runner.launch import recorded_in

    scenario = load_scenario(Path(__file__).resolve().parents[1] / "e2e" / "small.yaml")
    build(scenario, tmp_path / "cfg", portable=True, broker_key=False, results_dir=tmp_path / "res")
    assert recorded_in(tmp_path / "cfg") == (tmp_path / "res").resolve()
    # collecting a run that never ran fails, and what it merges goes to the results folder, not among the configs
    from click.testing import CliRunner

    from runner.cli import main
    collected = CliRunner().invoke(main, ["collect", str(tmp_path / "cfg"), "--scenario",
                                          str(Path(__file__).resolve().parents[1] / "e2e" / "small.yaml")])
    assert collected.exit_code == 1 and "did not finish" in collected.output, collected.output
    assert not (tmp_path / "cfg" / "results").exists() and (tmp_path / "res" / "results").is_dir()
    build(scenario, tmp_path / "plain", broker_key=False)
    assert recorded_in(tmp_path / "plain") == (tmp_path / "plain").resolve()
