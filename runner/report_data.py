"""End of a run: collect results, compute KPIs, write kpis.json."""

from __future__ import annotations

from pathlib import Path

from federates.common.config import Scenario
from runner.results import collect, kpis, prosumer_costs, write_kpis


def finish_run(sc: Scenario, run_dir: Path, placed, *, wall_s: float | None = None) -> dict:
    frames = collect(run_dir)
    costs = prosumer_costs(frames, sc.tariff, sc.start)
    costs.to_csv(run_dir / "results" / "prosumer_kpis.csv", index=False)
    figures = kpis(frames, costs)
    if wall_s is not None:
        figures["wall_s"] = round(wall_s, 2)
    if placed:
        figures["prosumers"] = sum(len(p.prosumers) for p in placed)
    write_kpis(run_dir, figures)
    return figures
