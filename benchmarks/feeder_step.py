"""Per-step cost of FeederModel vs a bare opendssdirect loop doing the same power flows.

One step = set every prosumer's net injection + solve (+ for FeederModel: read back voltages, head
power, losses, loadings, violations, and the power-balance and injection checks). Both loops run the
same seeded injection sequence on the same feeder with the same prosumer loads switched to constant
power. Feeders: IEEE 13 (ours), IEEE 123 and the European LV test case (907 buses, the largest
available) from ../shared/data/feeders, and our lv_suburb.

Run: ``python benchmarks/feeder_step.py [--steps N]``. The last line is a JSON object with the figures.
This benchmark imports opendssdirect directly for the bare baseline (the only place besides
federates/feeder/model.py), since measuring against the bare engine is its purpose.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import opendssdirect

from federates.feeder.model import PROSUMER_VMAX_PU, PROSUMER_VMIN_PU, FeederModel

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "feeders"
FEEDERS = {
    "ieee13": REPO / "feeders" / "ieee13" / "Master.dss",
    "ieee123": SHARED / "123Bus" / "IEEE123Master.dss",
    "lv_suburb": REPO / "feeders" / "lv_suburb" / "Master.dss",
    "eu_lv_907bus": SHARED / "LVTestCase" / "Master.dss",
}


def injection_sequence(names: list[str], steps: int, seed: int) -> list[dict[str, float]]:
    """Seeded net injections in kW (+ export): between 3 kW import and 4 kW export per prosumer."""
    rng = random.Random(seed)
    return [{n: rng.uniform(-3.0, 4.0) for n in names} for _ in range(steps)]


def time_model(path: Path, steps: int) -> tuple[float, list[str], list[dict[str, float]]]:
    model = FeederModel(path)
    names = model.place_prosumers("all", seed=1).loads
    seq = injection_sequence(names, steps, seed=7)
    model.solve()
    start = time.perf_counter()
    for p in seq:
        model.set_injections(p)
        state = model.solve()
        if not state.converged:
            raise RuntimeError(f"{path.name}: {state.message}")
    elapsed = (time.perf_counter() - start) / steps
    model.close()
    return elapsed, names, seq


def time_bare(path: Path, names: list[str], seq: list[dict[str, float]], *, read: bool = False) -> float:
    """Bare loop: set the prosumer loads and solve; with ``read`` also fetch the engine-side results the
    model needs (node voltages, element loadings, head power, losses), with no Python post-processing."""
    dss = opendssdirect.dss.NewContext()
    dss.Basic.AllowChangeDir(False)
    dss.Text.Command(f'redirect "{path}"')
    dss.Text.Command("set maxiterations=100 maxcontroliter=100")
    for n in names:
        dss.Loads.Name(n)
        dss.Loads.Model(1)
        dss.Loads.Vminpu(PROSUMER_VMIN_PU)
        dss.Loads.Vmaxpu(PROSUMER_VMAX_PU)
    dss.Solution.Solve()
    start = time.perf_counter()
    for p in seq:
        for n, v in p.items():
            dss.Loads.Name(n)
            dss.Loads.kW(-v)
        dss.Solution.Solve()
        if not dss.Solution.Converged():
            raise RuntimeError(f"{path.name}: bare loop did not converge")
        if read:
            dss.Circuit.AllBusMagPu()
            dss.PDElements.AllPctNorm()
            dss.Circuit.TotalPower()
            dss.Circuit.Losses()
    elapsed = (time.perf_counter() - start) / len(seq)
    dss.Text.Command("clear")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    results = {}
    print(
        f"{'feeder':<14} {'prosumers':>9} {'model ms':>9} {'bare ms':>9} {'ratio':>6}"
        f" {'bare+read ms':>12} {'ratio':>6}"
    )
    for label, path in FEEDERS.items():
        if not path.is_file():
            print(f"{label:<14} skipped: {path} not found")
            continue
        t_model, names, seq = time_model(path, args.steps)
        t_bare = time_bare(path, names, seq)
        t_read = time_bare(path, names, seq, read=True)
        results[label] = {
            "prosumers": len(names),
            "model_ms": round(t_model * 1e3, 4),
            "bare_ms": round(t_bare * 1e3, 4),
            "ratio": round(t_model / t_bare, 3),
            "bare_read_ms": round(t_read * 1e3, 4),
            "ratio_vs_bare_read": round(t_model / t_read, 3),
        }
        print(
            f"{label:<14} {len(names):>9} {t_model * 1e3:>9.3f} {t_bare * 1e3:>9.3f} {t_model / t_bare:>6.2f}"
            f" {t_read * 1e3:>12.3f} {t_model / t_read:>6.2f}"
        )
    print("target: model within 1.5x of the bare loop (bare+read: the engine's own extraction cost)")
    print(json.dumps({"benchmark": "feeder_step", "steps": args.steps, "feeders": results}))


if __name__ == "__main__":
    main()
