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
from runner.preflight import check_out_dir

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
        except OSError as exc:  # a file or folder the command needed: name it rather than print a traceback
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(f"error: cannot use{where}: {exc.strerror or exc}; check the path and its permissions", err=True)
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
    """Load SCENARIO with the command-line overrides and run every pre-launch check (``runner.preflight``);
    raise one ConfigError listing every problem."""
    from runner.preflight import preflight

    path = Path(scenario) if scenario else DEFAULT_SCENARIO
    sets, problems = list(overrides), []
    if hours is not None:
        sets.append(f"hours={hours}")
    if seed is not None:
        sets.append(f"seed={seed}")
    if mode is not None:
        sets.append(f"mode={mode}")
    if feeder is not None:
        full = Path(feeder).resolve()
        if full.is_file():
            sets.append(f"feeders.0.master={full}")
        else:
            problems.append(f"--feeder {feeder}: file not found (looked at {full}); give an OpenDSS master file")
    try:
        sc = load_scenario(path, sets)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems, exc.source) from None
    if feeder is not None:
        sc = _without_old_feeder_battery(sc, sets)
    problems += preflight(sc)
    if problems:
        raise ConfigError(problems, str(path.resolve()))
    return sc


def _without_old_feeder_battery(sc: Scenario, sets: list[str]) -> Scenario:
    """``--feeder`` swaps the first feeder's model: a community battery placed at a bus of the old model is not
    placed (said on stderr) unless ``--set`` gave it a bus of the new one."""
    battery = sc.feeders[0].vpp.community_battery
    if battery is None or any(s.startswith("feeders.0.vpp.community_battery") for s in sets):
        return sc
    click.echo(f"note: --feeder replaces the model of feeders.0 ({sc.feeders[0].name}); its community battery at "
               f"bus {battery.bus!r} of the old model is not placed. Give it a bus of the new feeder with "
               "--set feeders.0.vpp.community_battery.bus=BUS to keep it", err=True)
    vpp = sc.feeders[0].vpp.model_copy(update={"community_battery": None})
    first = sc.feeders[0].model_copy(update={"vpp": vpp})
    return sc.model_copy(update={"feeders": [first, *sc.feeders[1:]]})


@click.group()
@click.version_option(package_name="harmony-p2p")
def main():
    """Co-simulation of hierarchical P2P energy markets over HELICS and OpenDSS."""


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False), help="run folder (default runs/<scenario name>)")
@click.option("--force", is_flag=True, help="replace the previous run in the run folder (only the files a run writes)")
@click.option("--mode", type=click.Choice(MODES), help="market arrangement (default: the scenario's, full)")
@click.option("--quiet", is_flag=True, help="print only the summary (and warnings): no progress")
@scenario_options
@friendly
def run(scenario, out, force, mode, quiet, hours, seed, feeder, overrides):
    """Build, validate and run SCENARIO (default: configs/scenarios/default.yaml); collect results and KPIs.

    Exit status 0 only when every federate finished the whole span; 1 when one did not (each is named, with how
    far it got and why); 2 on bad input, including a run folder that is not empty and not a previous run.
    """
    if out is not None:
        check_out_dir(out)
    sc = resolve_scenario(scenario, hours, seed, feeder, overrides, mode)
    run_dir = Path(out or f"runs/{sc.name}").resolve()
    figures = execute(sc, run_dir, show_progress=not quiet, force=force)
    print_summary(sc, run_dir, figures)


MAX_LAUNCHES = 3  # a federation whose port was taken by another program is relaunched on other ports


def execute(sc: Scenario, run_dir: Path, *, show_progress: bool = True, force: bool = False) -> dict:
    """Run one scenario into ``run_dir``; raise HarmonyError naming every federate that did not finish.

    ``run_dir`` must be new, empty, or a previous run replaced with ``force`` (``runner.launch.claim_out_dir``).
    Success is decided from what the federates recorded, never from ``helics run``'s exit status alone.
    """
    from runner.launch import claim_out_dir, incomplete_run, unfinished
    from runner.results import finish_run

    claim_out_dir(run_dir, "run", force=force)
    if show_progress:
        click.echo(f"building {sc.name} ({sc.mode}, {sc.hours:g} h, {len(sc.feeders)} feeder(s)) in {run_dir}",
                   err=True)
    for attempt in range(1, MAX_LAUNCHES + 1):
        launch, wall = _launch(sc, run_dir, show_progress)
        missing = unfinished(run_dir, launch)
        if not (missing and launch.bind_failure) or attempt == MAX_LAUNCHES:
            break
        click.echo(f"a local port was taken while the federation started (attempt {attempt} of {MAX_LAUNCHES}); "
                   "relaunching on other ports", err=True)
        shutil.rmtree(run_dir / "parts", ignore_errors=True)
    if missing:
        raise incomplete_run(run_dir, missing, launch.code)
    if launch.code != 0:
        click.echo(f"warning: helics run exited with status {launch.code} although every federate finished; "
                   f"see {run_dir}/helics_run.log", err=True)
    return finish_run(sc, run_dir, wall_s=wall)


def _launch(sc: Scenario, run_dir: Path, show_progress: bool):
    """Build the federation on a reserved block of ports and run it once: (Launch, wall seconds)."""
    from runner.build import build, prosumer_federate_size, reserve_ports, write_placement
    from runner.launch import run_federation

    ports = reserve_ports()
    try:
        fed_json, configs, placed = build(sc, run_dir, broker_port=ports.base)
        if 2 * len(configs) + 16 > ports.size:  # a large federation: its cores need a larger block
            ports.release()
            ports = reserve_ports(len(configs))
            fed_json, configs, placed = build(sc, run_dir, broker_port=ports.base)
        write_placement(run_dir, placed)
        n_pros = sum(len(p.prosumers) for p in placed)
        sizing = prosumer_federate_size(sc, placed)[1]
        if show_progress:
            click.echo(f"launching {len(configs)} federates ({n_pros} prosumers; {sizing}) with helics run", err=True)
        started = time.monotonic()
        launch = run_federation(fed_json, run_dir, sc.duration_s, show_progress=show_progress)
        return launch, time.monotonic() - started
    finally:
        ports.release()


def print_summary(sc: Scenario, run_dir: Path, k: dict) -> None:
    lines = [
        f"{sc.name}: {sc.hours:g} h, mode {sc.mode}, wall {k.get('wall_s', 0):.1f} s",
        "  Layer I market        " + ", ".join(f"{f.name} {k.get(f'mechanism_{f.name}', '?')}" for f in sc.feeders),
        f"  community cost        {k['total_cost']:10.2f} $   (cash {k['cash_cost']:.2f} $, stored energy "
        f"{k['stored_energy_change_kwh']:+.1f} kWh worth {k['stored_energy_value']:+.2f} $)",
        f"  P2P energy (Layer I)  {k['p2p_energy_kwh']:10.2f} kWh",
        f"  ancillary revenue     {k['ancillary_revenue']:10.2f} $   penalties {round(k['penalties'], 2) + 0.0:.2f} $",
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
@click.option("--force", is_flag=True, help="replace the previous compare in the folder (only the files it wrote)")
@scenario_options
@friendly
def compare(scenario, out, force, hours, seed, feeder, overrides):
    """Run SCENARIO under all five modes on the same seed; print and write the comparison table."""
    from runner import api

    sc = resolve_scenario(scenario, hours, seed, feeder, overrides)
    out_dir = Path(out or f"runs/{sc.name}-compare").resolve()
    table = api.compare(sc, out=out_dir, force=force)
    click.echo((table.round(3) + 0.0).T.to_string())  # + 0.0: no "-0.000" for a zero that came out negative
    click.echo(f"written: {out_dir}/comparison.csv and {out_dir}/<mode>/")


@main.command("build")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="folder for federation.json and the federate configs")
@click.option("--results", "results", type=click.Path(file_okay=False),
              help="where the federates write results (default: the --out folder)")
@click.option("--port", type=int, help="broker port (default: the scenario's federation.broker_port)")
@click.option("--external", "external", multiple=True, metavar="NAME",
              help="federate NAME is run by an outside simulator: left out of federation.json (the broker still "
                   "waits for it); OUT/external/NAME.json says what it must do. Repeatable")
@click.option("--hosts", "hosts_file", type=click.Path(dir_okay=False, exists=True),
              help="hosts.yaml: which federates run on which machine and where the broker listens; writes "
                   "OUT/<host>/federation.json per host instead (docs/hosts.md)")
@click.option("--brokerkey/--no-brokerkey", default=True, show_default=True,
              help="require a new random key for this build (OUT/broker_key.json, mode 0600) from everything that "
                   "joins the broker")
@scenario_options
@friendly
def build_cmd(scenario, out, results, port, external, hosts_file, brokerkey, hours, seed, feeder, overrides):
    """Write OUT/federation.json (for `helics run --path`) and one config per federate."""
    from runner.build import build, prosumer_federate_size, write_placement
    from runner.hosts import load_hosts

    sc = resolve_scenario(scenario, hours, seed, feeder, overrides)
    hosts = load_hosts(hosts_file) if hosts_file else None
    out_dir = Path(out).resolve()
    results_dir = Path(results).resolve() if results else out_dir
    path, configs, placed = build(sc, out_dir, broker_port=port, portable=True, results_dir=results_dir,
                                  external=external, hosts=hosts, broker_key=brokerkey)
    write_placement(results_dir, placed)  # as `harmony run` does, so `harmony collect` has results/placement.csv
    if hosts is None:
        click.echo(f"wrote {path} with {len(configs)} federates ({prosumer_federate_size(sc, placed)[1]}); "
                   f"run it with: helics run --path {path}")
    else:
        click.echo(f"wrote {len(configs)} federates ({prosumer_federate_size(sc, placed)[1]}) for "
                   f"{len(hosts.hosts)} hosts; copy {out_dir} to each host and run there, the broker's host "
                   f"({hosts.broker.host}) first:")
        for host in hosts.hosts:
            click.echo(f"  {host}: helics run --path {out_dir / host / 'federation.json'}")
    for name in external:
        click.echo(f"{name} is external: start it with {out_dir / 'external' / (name + '.json')} "
                   f"(the broker waits for all {len(configs)} federates)")


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@scenario_options
@friendly
def validate(scenario, hours, seed, feeder, overrides):
    """Check SCENARIO (default: configs/scenarios/default.yaml) without simulating: fields, files (feeders, ISO
    CSVs over the run), base-case power flows, placement, memory and the federation wiring."""
    import tempfile

    from runner.build import build

    sc = resolve_scenario(scenario, hours, seed, feeder, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        _, configs, placed = build(sc, Path(tmp))
    n_subs = sum(len(c.runtime.subscriptions) for c in configs)
    click.echo(f"{scenario or DEFAULT_SCENARIO}: valid; {len(configs)} federates, {n_subs} subscriptions all matched, "
               f"{sum(len(p.prosumers) for p in placed)} prosumers placed")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--scenario", type=click.Path(dir_okay=False), help="scenario the run used (for tariffs)")
@friendly
def collect(run_dir, scenario):
    """Merge a run's recorded parts into results/ and write kpis.json (after a plain `helics run`).

    Exit status 1, naming each federate that did not finish, when the run is incomplete: the partial results
    are merged but no kpis.json is written.
    """
    from runner.launch import incomplete_run, recorded_in, unfinished
    from runner.results import finish_run

    sc = load_scenario(Path(scenario) if scenario else DEFAULT_SCENARIO)
    run_dir = Path(run_dir).resolve()
    missing = unfinished(run_dir)
    if missing:
        raise incomplete_run(run_dir, missing, None)
    figures = finish_run(sc, recorded_in(run_dir))
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
