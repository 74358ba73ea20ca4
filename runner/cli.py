"""``harmony``: build, validate, run and inspect co-simulations of hierarchical P2P energy markets."""

from __future__ import annotations

import functools
import json
import shutil
import sys
import time
from pathlib import Path

import click

from federates.common.config import MODES, Scenario, load_scenario
from federates.common.errors import ConfigError, HarmonyError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = REPO_ROOT / "configs" / "scenarios" / "default.yaml"


def friendly(fn):
    """Bad input exits with status 2 and a message naming file, field, value and fix; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except HarmonyError as exc:
            click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)

    return wrapper


def scenario_options(fn):
    fn = click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
                      help="override a scenario field by its dotted path, e.g. market.mechanism=sdr")(fn)
    fn = click.option("--feeder", type=click.Path(dir_okay=False),
                      help="OpenDSS master file replacing the (first) feeder")(fn)
    fn = click.option("--seed", type=int, help="seed of every random source")(fn)
    fn = click.option("--hours", type=float, help="simulated hours (a multiple of 5 minutes)")(fn)
    return fn


def resolve_scenario(scenario: str | None, hours, seed, feeder, overrides, mode=None) -> Scenario:
    path = Path(scenario) if scenario else DEFAULT_SCENARIO
    sets = list(overrides)
    if hours is not None:
        sets.append(f"hours={hours}")
    if seed is not None:
        sets.append(f"seed={seed}")
    if mode is not None:
        sets.append(f"mode={mode}")
    if feeder is not None:
        full = Path(feeder).resolve()
        if not full.is_file():
            raise ConfigError(f"--feeder {feeder}: file not found (looked at {full}); give an OpenDSS master file")
        sets.append(f"feeders.0.master={full}")
    return load_scenario(path, sets)


@click.group()
@click.version_option(package_name="harmony-p2p")
def main():
    """Co-simulation of hierarchical P2P energy markets over HELICS and OpenDSS."""


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False), help="run folder (default runs/<scenario name>)")
@click.option("--mode", type=click.Choice(MODES), help="market arrangement (default: the scenario's, full)")
@click.option("--quiet", is_flag=True, help="no progress line")
@scenario_options
@friendly
def run(scenario, out, mode, quiet, hours, seed, feeder, overrides):
    """Build, validate and run SCENARIO (default: configs/scenarios/default.yaml); collect results and KPIs."""
    sc = resolve_scenario(scenario, hours, seed, feeder, overrides, mode)
    run_dir = Path(out or f"runs/{sc.name}").resolve()
    figures = execute(sc, run_dir, show_progress=not quiet)
    print_summary(sc, run_dir, figures)


def execute(sc: Scenario, run_dir: Path, *, show_progress: bool = True) -> dict:
    """Run one scenario into ``run_dir``; raise HarmonyError naming the failed federate(s)."""
    from runner.build import build, free_port, write_placement
    from runner.launch import failure_report, run_federation
    from runner.results import collect, finish_run

    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    click.echo(f"building {sc.name} ({sc.mode}, {sc.hours:g} h, {len(sc.feeders)} feeder(s)) in {run_dir}",
               err=True)
    fed_json, configs, placed = build(sc, run_dir, broker_port=free_port())
    write_placement(run_dir, placed)
    n_pros = sum(len(p.prosumers) for p in placed)
    click.echo(f"launching {len(configs)} federates ({n_pros} prosumers) with helics run", err=True)
    started = time.monotonic()
    code = run_federation(fed_json, run_dir, sc.duration_s, show_progress=show_progress)
    wall = time.monotonic() - started
    if code == 0:
        return finish_run(sc, run_dir, wall_s=wall)
    causes = failure_report(run_dir) or [f"helics run exited with status {code}; see {run_dir}/*.log"]
    try:
        collect(run_dir)
    except Exception as exc:  # noqa: BLE001 - the federation's failure is what the user must see
        causes.append(f"(collecting the partial results also failed: {exc})")
    raise HarmonyError("the federation failed; results so far are in "
                       f"{run_dir}/results\n  " + "\n  ".join(causes))


def print_summary(sc: Scenario, run_dir: Path, k: dict) -> None:
    lines = [
        f"{sc.name}: {sc.hours:g} h, mode {sc.mode}, wall {k.get('wall_s', 0):.1f} s",
        f"  community cost        {k['total_cost']:10.2f} $",
        f"  P2P energy (Layer I)  {k['p2p_energy_kwh']:10.2f} kWh",
        f"  ancillary revenue     {k['ancillary_revenue']:10.2f} $   penalties {k['penalties']:.2f} $",
        f"  Layer III energy      {k['l3_energy_kwh']:10.2f} kWh",
        f"  self-sufficiency      {k['self_sufficiency_pct']:10.1f} %   self-consumption "
        f"{k['self_consumption_pct']:.1f} %",
        f"  voltage range         {k['v_min_pu']:.4f} - {k['v_max_pu']:.4f} pu, violations "
        f"{k['voltage_violation_minutes']:.0f} min, corrective actions {k['corrective_actions']}",
        f"  unmet flexible load   {k['unmet_flexible_kwh']:10.4f} kWh",
        f"results: {run_dir}/results   kpis: {run_dir}/kpis.json",
    ]
    click.echo("\n".join(lines))


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False), help="folder (default runs/<name>-compare)")
@scenario_options
@friendly
def compare(scenario, out, hours, seed, feeder, overrides):
    """Run SCENARIO under all five modes on the same seed; print and write the comparison table."""
    from runner.compare import run_all

    sc = resolve_scenario(scenario, hours, seed, feeder, overrides)
    out_dir = Path(out or f"runs/{sc.name}-compare").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    table = run_all(sc, out_dir, execute)
    with_pct = table.copy()
    click.echo(with_pct.round(3).T.to_string())
    click.echo(f"written: {out_dir}/comparison.csv and {out_dir}/<mode>/")


@main.command("build")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="folder for federation.json and the federate configs")
@click.option("--results", "results", type=click.Path(file_okay=False),
              help="where the federates write results (default: the --out folder)")
@click.option("--port", type=int, help="broker port (default: the scenario's federation.broker_port)")
@scenario_options
@friendly
def build_cmd(scenario, out, results, port, hours, seed, feeder, overrides):
    """Write OUT/federation.json (for `helics run --path`) and one config per federate."""
    from runner.build import build

    sc = resolve_scenario(scenario, hours, seed, feeder, overrides)
    out_dir = Path(out).resolve()
    path, configs, _ = build(sc, out_dir, broker_port=port, portable=True,
                             results_dir=Path(results).resolve() if results else None)
    click.echo(f"wrote {path} with {len(configs)} federates; run it with: helics run --path {path}")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@scenario_options
@friendly
def validate(scenario, hours, seed, feeder, overrides):
    """Check SCENARIO without simulating: fields, files, feeders, placement and the federation wiring."""
    import tempfile

    from runner.build import build

    sc = resolve_scenario(scenario, hours, seed, feeder, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        _, configs, placed = build(sc, Path(tmp))
    n_subs = sum(len(c.runtime.subscriptions) for c in configs)
    click.echo(f"{scenario}: valid; {len(configs)} federates, {n_subs} subscriptions all matched, "
               f"{sum(len(p.prosumers) for p in placed)} prosumers placed")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--scenario", type=click.Path(dir_okay=False), help="scenario the run used (for tariffs)")
@friendly
def collect(run_dir, scenario):
    """Merge a run's recorded parts into results/ and write kpis.json (after a plain `helics run`)."""
    from runner.results import finish_run

    sc = load_scenario(Path(scenario) if scenario else DEFAULT_SCENARIO)
    figures = finish_run(sc, Path(run_dir))
    click.echo(json.dumps(figures, indent=2))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--compare", "compare_dir", type=click.Path(file_okay=False, exists=True),
              help="a `harmony compare` folder: adds the cost of each prosumer under each mode")
@friendly
def report(run_dir, compare_dir):
    """Write RUN_DIR/report.html (self-contained) and RUN_DIR/figures/*.png."""
    from runner.report import write_report

    path = write_report(Path(run_dir), compare_dir=Path(compare_dir) if compare_dir else None)
    click.echo(f"wrote {path}")


@main.group()
def feeder():
    """Inspect OpenDSS feeders."""


@feeder.command("info")
@click.argument("master", type=click.Path(dir_okay=False, exists=True))
@friendly
def feeder_info_cmd(master):
    """Buses, loads, base voltages and the base-case voltage range of MASTER."""
    from federates.feeder.model import feeder_info

    click.echo(feeder_info(master))


if __name__ == "__main__":
    main()
