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
