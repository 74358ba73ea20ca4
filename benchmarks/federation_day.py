"""Wall time of a whole simulated day through `harmony run` (a real HELICS federation), at growing sizes.

Cases: the default scenario (2 feeders, 40 prosumers); the same with every house of both feeders a prosumer
(111); the three-VPP scenario (45). Prints a table, then one JSON object on the last line.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "default_40": ["configs/scenarios/default.yaml"],
    "default_all_houses": ["configs/scenarios/default.yaml", "--set", "feeders.0.prosumers.placement=all",
                           "--set", "feeders.1.prosumers.placement=all", "--set",
                           "federation.prosumers_per_federate=28"],
    "three_vpps_45": ["configs/scenarios/three_vpps.yaml"],
}


def run(args: list[str], out: Path) -> dict:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runner.cli", "run", *args, "--out", str(out), "--quiet"], cwd=REPO,
                   check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    kpis = json.loads((out / "kpis.json").read_text())
    return {"wall_s": round(wall, 1), "prosumers": kpis["prosumers"],
            "p2p_energy_kwh": round(kpis["p2p_energy_kwh"], 1), "l3_energy_kwh": round(kpis["l3_energy_kwh"], 2),
            "nonconverged_steps": kpis["nonconverged_steps"]}


def main() -> None:
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in CASES.items():
            figures[name] = run(args, Path(tmp) / name)
            f = figures[name]
            print(f"{name:22s} {f['prosumers']:4d} prosumers  {f['wall_s']:7.1f} s wall for 24 simulated hours")
    figures["machine"] = f"{platform.processor() or platform.machine()}, {platform.python_version()}"
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
