"""A small mutation check: plant plausible bugs one at a time and see whether the tests catch each.

Each mutant is one text substitution in one source file (the text must occur exactly once, else the mutant is
reported as stale and not counted) plus the tests that should catch it. By default the whole check runs on a
temporary copy of the working tree (tracked and untracked files, without .venv, .git and runs), so files that
others are editing are never touched; ``--in-place`` mutates this tree instead and restores every file
afterwards, also on Ctrl-C or SIGTERM.

    python tools/mutate.py                  # the fast mutants (unit, property, integration tests), ~5 min
    python tools/mutate.py --e2e            # also the timing mutants, each needing a real federation (~1 min)
    python tools/mutate.py --list           # what would be planted
    python tools/mutate.py --only kda_k --only battery_soc_max

Exit status: 0 when every mutant was caught, 1 when some survived (listed at the end), 2 on a failing baseline
(the tests must pass before anything is planted) or on a mutant not counted: stale (its text no longer occurs
exactly once) or broken (pytest could not even run the tests, e.g. the mutant breaks an import).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "runs", "__pycache__", "*.egg-info", ".pytest_cache",
                                     ".hypothesis", ".ruff_cache")

P2P = ("tests/unit/test_p2p_market.py", "tests/property/test_p2p_properties.py", "tests/unit/test_layer3_clearing.py")
L3 = ("tests/unit/test_layer3_clearing.py", "tests/unit/test_layer3_wheeling.py")
ISO = ("tests/unit/test_iso_market.py", "tests/unit/test_iso_operator.py")
VPP = ("tests/unit/test_vpp_offer_highs.py", "tests/unit/test_vpp_bidding.py", "tests/unit/test_vpp_dispatch.py",
       "tests/unit/test_corrective.py", "tests/unit/test_community_battery.py")
SETTLE = ("tests/unit/test_settlement.py", "tests/unit/test_iso_operator.py")
BATTERY = ("tests/unit/test_battery_limits.py", "tests/unit/test_flex_window.py", "tests/unit/test_devices.py",
           "tests/unit/test_fleet.py")
KPI = ("tests/unit/test_compare.py", "tests/unit/test_losing_money.py")
TIMEBASE = ("tests/unit/test_timebase.py",)
VOLTAGE = ("tests/integration/test_violations.py",)
E2E = ("tests/e2e/test_timing.py", "tests/e2e/test_federation.py")
PROFILES = ("tests/unit/test_profile_exact.py", "tests/unit/test_devices.py")
IMPORTS = ("tests/unit/test_imports.py",)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    e2e: bool = False


def _m(name, path, old, new, tests, e2e=False) -> Mutant:
    return Mutant(name, path, old, new, tuple(tests), e2e)


MARKET = "federates/vpp/p2p_market.py"
FLEET = "federates/prosumer/fleet.py"
DEVICES = "federates/prosumer/devices.py"
MUTANTS: list[Mutant] = [
    # ---- Layer I and III markets
    _m("kda_k_swapped", MARKET, "return k * b + (1.0 - k) * a", "return k * a + (1.0 - k) * b", P2P),
    _m("kda_ignores_next_ask", MARKET, "b = last_bid if next_ask is None else min(last_bid, next_ask)",
       "b = last_bid", P2P),
    _m("auction_crosses_any_bid", MARKET, "lambda b, a: b.limit_price_per_kwh >= a.limit_price_per_kwh)",
       "lambda b, a: b.limit_price_per_kwh >= 0.0)", P2P),
    _m("bids_sorted_cheapest_first", MARKET, 'sign = -1.0 if side == "buy" else 1.0', "sign = 1.0", P2P),
    _m("gate_accepts_late_orders", MARKET, "if not sub.submitted_s <= gate_s:",
       "if not sub.submitted_s <= gate_s + 300:", P2P),
    _m("gate_ignores_impersonation", MARKET, "if host != sub.sender:", "if host is None:", P2P),
    _m("gate_ignores_price_bounds", MARKET, "if not (math.isfinite(price) and floor <= price <= cap):",
       "if not math.isfinite(price):", P2P),
    _m("verify_buyer_checked_against_cap", MARKET, "if trade.price_per_kwh > bid + tol:",
       "if trade.price_per_kwh > cap + tol:", P2P),
    _m("sdr_sell_price_formula", MARKET, "sell = floor * cap / ((cap - floor) * sdr + floor)",
       "sell = floor * cap / ((cap - floor) * sdr + cap)", P2P),
    _m("sdr_buy_topped_up_at_floor", MARKET, "return sell, sell * sdr + cap * (1.0 - sdr)",
       "return sell, sell * sdr + floor * (1.0 - sdr)", P2P),
    _m("pay_as_bid_at_incoming_price", MARKET, "trades.append(_trade(buy, sell, q, rest.limit_price_per_kwh))",
       "trades.append(_trade(buy, sell, q, order.limit_price_per_kwh))", P2P),
    _m("bilateral_self_trade", MARKET, "if buy.participant != sell.participant and surplus >= 0.0",
       "if surplus >= 0.0", P2P),
    _m("l3_credit_sign_ignores_direction", "federates/vpp_market/clearing.py",
       'sign = 1.0 if direction == "up" else -1.0', "sign = 1.0", L3),
    _m("l3_wheeling_not_netted", "federates/vpp_market/clearing.py",
       "limit = order.limit_price_per_kwh - wheeling", "limit = order.limit_price_per_kwh", L3),
    _m("l3_tie_limit_doubled", "federates/vpp_market/clearing.py", "if total <= limit_kwh:",
       "if total <= 2 * limit_kwh:", L3),
    # ---- the VPP: its offer model in HiGHS, real-time dispatch, voltage guard, and the recorder
    _m("vpp_offer_columns_swapped", "federates/vpp/ancillary_bidding.py",
       "self.ch, self.dis, self.dis_x = base + 6, base + 7, base + 8",
       "self.ch, self.dis_x, self.dis = base + 6, base + 7, base + 8", VPP),
    _m("vpp_offer_cost_rounded_otherwise", "federates/vpp/ancillary_bidding.py",
       "costs[lay.offer[j]] = per_mw * d.value[j]", "costs[lay.offer[j]] = d.h * d.value[j] / KW_PER_MW", VPP),
    _m("vpp_activation_cost_wrong_half_slot", "federates/vpp/platform.py", "half = (interval // 3) % 2",
       "half = interval % 2", VPP),
    _m("vpp_import_cap_room_sign", "federates/vpp/platform.py", "max(cap + last_p.get(m, 0.0), 0.0)",
       "max(cap - last_p.get(m, 0.0), 0.0)", VPP),
    _m("guard_relaxes_inside_the_margin", "federates/vpp/corrective.py",
       "calm_low, calm_high = self.v_min_pu + self.release_pu, self.v_max_pu - self.release_pu",
       "calm_low, calm_high = self.v_min_pu + self.margin_pu, self.v_max_pu - self.margin_pu", VPP),
    _m("recorder_values_in_call_order", "federates/common/recorder.py",
       "append(_ROW_VALUES[table](row))", "append(tuple(row.values()))",
       ("tests/unit/test_recorder.py",)),
    # ---- ISO market and settlement
    _m("iso_price_half_the_dual", "federates/iso/ancillary_market.py",
       "max(0.0, float(m.dual[m.requirement[p]]))", "max(0.0, float(m.dual[m.requirement[p]]) / 2)", ISO),
    _m("iso_up_capacity_doubled", "federates/iso/ancillary_market.py", "return sum(terms) <= m.capacity_kw[o]",
       "return sum(terms) <= 2 * m.capacity_kw[o]", ISO),
    _m("iso_ignores_max_kw", "federates/iso/ancillary_market.py",
       "return 0.0, min(float(offer.max_kw.get(p, offer.capacity_kw)), float(offer.capacity_kw))",
       "return 0.0, float(offer.capacity_kw)", ISO),
    _m("capacity_payment_per_hour", "federates/iso/settlement.py",
       "cap[p] = float(award) / KW_PER_MW * price * period_s / S_PER_H", "cap[p] = float(award) / KW_PER_MW * price",
       SETTLE),
    _m("performance_ignores_over_delivery", "federates/iso/settlement.py",
       "1.0 - np.abs(dlv - req).sum() / total", "1.0 - np.maximum(req - dlv, 0.0).sum() / total", SETTLE),
    _m("shortfall_reversed", "federates/iso/settlement.py", "short[p] = float(np.maximum(req - dlv, 0.0).mean())",
       "short[p] = float(np.maximum(dlv - req, 0.0).mean())", SETTLE),
    _m("penalty_without_multiplier", "federates/iso/settlement.py",
       "clearing_price_per_mw_h * multiplier * period_s / S_PER_H", "clearing_price_per_mw_h * period_s / S_PER_H",
       SETTLE),
    _m("reg_down_follows_up_signal", "federates/iso/settlement.py", '"reg_down": max(-signal, 0.0)',
       '"reg_down": max(signal, 0.0)', SETTLE),
    _m("payment_ignores_performance", "federates/iso/settlement.py", "perf[p] = cap[p] * score[p]",
       "perf[p] = cap[p]", SETTLE),
    _m("operator_drops_penalty_multiplier", "federates/iso/operator.py",
       ",\n                               penalty_multiplier=self.config.penalty_multiplier)", ")", SETTLE),
    _m("operator_credit_sign", "federates/iso/operator.py", "+ credit_kwh * 3600.0 / TICK_S)",
       "- credit_kwh * 3600.0 / TICK_S)", SETTLE),
    _m("operator_down_delivery_sign", "federates/iso/operator.py", "out[p] = max(-delivered_signed_kw, 0.0)",
       "out[p] = max(delivered_signed_kw, 0.0)", SETTLE),
    _m("operator_ignores_baseline", "federates/iso/operator.py",
       "delivered_signed = (members_p_kw - self.baselines[slot].get(vpp, 0.0)", "delivered_signed = (members_p_kw",
       SETTLE),
    _m("operator_settles_previous_slot", "federates/iso/operator.py",
       "slot = interval // 3\n        clearing = self.cleared.get(slot)",
       "slot = interval // 3 - 1\n        clearing = self.cleared.get(slot)", SETTLE),
    # ---- battery, flexible loads, tariff
    _m("battery_charge_ignores_soc_max", FLEET, '_pmax(0.0, b["soc_max_kwh"] - soc)',
       '_pmax(0.0, b["capacity_kwh"] - soc)', BATTERY),
    _m("battery_discharge_ignores_reserve", FLEET, "_pmax(0.0, soc - lo_kwh)",
       '_pmax(0.0, soc - b["soc_min_kwh"])', BATTERY),
    _m("battery_soc_efficiency_inverted", FLEET, 'np.where(bat > 0, bat / b["eta_discharge"], bat * b["eta_charge"])',
       'np.where(bat > 0, bat * b["eta_discharge"], bat * b["eta_charge"])', BATTERY),
    _m("headroom_ignores_current_output", FLEET, "_pmax(dis_max - battery_kw, 0.0), _pmax(ch_max + battery_kw, 0.0)",
       "_pmax(dis_max, 0.0), _pmax(ch_max, 0.0)", BATTERY),
    _m("flex_full_power_in_partial_interval", FLEET, "most = _pmin(p * inside_h / dt_h, rem / dt_h)",
       "most = _pmin(p, rem / dt_h)", BATTERY),
    _m("import_cap_cuts_must_run", FLEET, "cut = _pmax(0.0, _pmin(deficit, flex[:, f] - must[:, f]))",
       "cut = _pmax(0.0, _pmin(deficit, flex[:, f]))", BATTERY),
    _m("floor_ignores_reserve", "federates/prosumer/devices.py", "return max(self.soc_min_frac, self.reserve_frac)",
       "return self.soc_min_frac", BATTERY),
    _m("net_metering_ignored", "federates/prosumer/devices.py",
       "return self.retail_at(hour) if self.net_metering else self.buyback_price_per_kwh",
       "return self.buyback_price_per_kwh", BATTERY),
    # ---- seeded profiles (the scipy model to the bit) and what a federate imports
    _m("ar1_initial_state_twice", DEVICES, "return ar1_filter(innov, phi, z0)",
       "return ar1_filter(innov, phi, phi * z0)", PROFILES),
    _m("load_duration_rounded_down", DEVICES, "np.rint(minutes * rng.uniform", "np.floor(minutes * rng.uniform",
       PROFILES),
    _m("lights_without_day_wrap", DEVICES, "_LIGHT_KW * _dark(hours % 24.0)", "_LIGHT_KW * _dark(hours)", PROFILES),
    _m("cloud_median_inverted", DEVICES, "special.ndtri(cloudiness)", "special.ndtri(1.0 - cloudiness)", PROFILES),
    _m("config_imports_pandas", DEVICES, "import numpy as np\n", "import numpy as np\nimport pandas\n", IMPORTS),
    _m("scipy_imported_with_pyomo_hook", "federates/common/imports.py",
       "    skip_pyomo_scipy_finalize()\n    return importlib", "    return importlib", IMPORTS),
    # ---- KPIs and voltage limits
    _m("losing_money_sign", "runner/compare.py", "np.mean(saved < -LOSS_THRESHOLD)",
       "np.mean(saved < LOSS_THRESHOLD)", KPI),
    _m("losing_money_counts_savers", "runner/compare.py", "np.mean(saved < -LOSS_THRESHOLD)",
       "np.mean(saved > LOSS_THRESHOLD)", KPI),
    _m("savings_pct_signed_reference", "runner/compare.py", "(reference - cost) / abs(reference)",
       "(reference - cost) / reference", KPI),
    _m("gini_not_shifted", "runner/compare.py", "savings_gini=gini(saved - min(saved.min(), 0.0))",
       "savings_gini=gini(saved)", KPI),
    _m("overvoltage_threshold_1_06", "federates/feeder/model.py", "for k in np.flatnonzero(hi > self.v_max_pu):",
       "for k in np.flatnonzero(hi > self.v_max_pu + 0.01):", VOLTAGE),
    _m("undervoltage_threshold_0_94", "federates/feeder/model.py", "for k in np.flatnonzero(lo < self.v_min_pu):",
       "for k in np.flatnonzero(lo < self.v_min_pu - 0.01):", VOLTAGE),
    # ---- timing: the clock
    _m("l1_gate_two_slots_ahead", "federates/common/timebase.py", "return self.tick_start_s // L1_PERIOD_S + 1",
       "return self.tick_start_s // L1_PERIOD_S + 2", TIMEBASE),
    _m("l2_gate_for_current_slot", "federates/common/timebase.py", "return self.tick_start_s // L2_PERIOD_S + 1",
       "return self.tick_start_s // L2_PERIOD_S", TIMEBASE),
    _m("last_gate_not_skipped", "federates/common/timebase.py",
       "if phase in PREPARING and _target_start_s(step) >= duration_s:",
       "if phase in PREPARING and _target_start_s(step) > duration_s:", TIMEBASE),
    _m("measure_after_setpoint", "federates/common/timebase.py", "    Phase.MEASURE: 2,", "    Phase.MEASURE: 6,",
       TIMEBASE),
    _m("signal_beside_layer3_orders", "federates/common/timebase.py", "    Phase.L3_SIGNAL: 0,",
       "    Phase.L3_SIGNAL: 2,", TIMEBASE),
    _m("plans_beside_offers", "federates/common/timebase.py", "    Phase.L1_COMMIT: 2,", "    Phase.L1_COMMIT: 3,",
       TIMEBASE),
    # ---- timing: the federates (each needs a real federation)
    _m("prosumer_dispatches_before_reading_setpoints", "federates/prosumer/federate.py",
       "setpoints = _read_vpp(shell, fleet, vpp, mine) if p2p else {}\n"
       "                records = fleet.dispatch(step.time_s, setpoints)",
       "records = fleet.dispatch(step.time_s, setpoints)\n"
       "                setpoints = _read_vpp(shell, fleet, vpp, mine) if p2p else {}", E2E, e2e=True),
    _m("vpp_setpoints_use_current_requirement", "federates/vpp/federate.py",
       "required = self.required_kw.get(nxt, 0.0)", "required = self.required_kw.get(step.interval, 0.0)", E2E,
       e2e=True),
    _m("iso_signals_the_current_interval", "federates/iso/federate.py", "reg, spin = iso.signal(step.interval + 1)",
       "reg, spin = iso.signal(step.interval)", E2E, e2e=True),
    _m("iso_settles_with_previous_layer3_credit", "federates/iso/federate.py",
       "credits.get(metered, {})", "credits.get(metered - 1, {})", E2E, e2e=True),
    _m("vpp_setpoints_use_previous_layer3_result", "federates/vpp/federate.py",
       "if result is not None and result.interval == nxt:", "if result is not None and result.interval == nxt - 1:",
       E2E, e2e=True),
    _m("vpp_splits_previous_award", "federates/vpp/federate.py",
       "up, down = self.vpp.take_awards(step.l2_slot, mine, prices)",
       "up, down = self.vpp.take_awards(step.l2_slot, self.vpp.awards.get(step.l2_slot - 1, {}), prices)", E2E,
       e2e=True),
]


class Stop(Exception):
    """SIGTERM: unwind like Ctrl-C so the planted file is restored."""


def _on_sigterm(_signum, _frame):
    raise Stop


def run_tests(root: Path, tests: tuple[str, ...], timeout_s: float) -> tuple[int, str]:
    """(pytest exit status, last line of output) over ``tests`` in ``root``; the first failure stops it.

    0: all passed; 1: a test failed; 2-4: interrupted, internal or usage error, e.g. an import that fails."""
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return 1, f"timeout after {timeout_s:.0f} s"
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return proc.returncode, (lines[-1] if lines else "")


def plant(root: Path, m: Mutant, timeout_s: float) -> str:
    """Plant ``m`` in ``root``, run its tests, restore the file; 'caught' (a test failed or hung), 'SURVIVED',
    'broken: ...' (pytest could not run the tests, e.g. the mutant breaks an import) or 'stale: ...'."""
    path = root / m.path
    if root == REPO and _edited(m.path):
        return f"stale: {m.path} has uncommitted edits; not mutated in place (run on the default copy)"
    original = path.read_text()
    count = original.count(m.old)
    if count != 1:
        return f"stale: text found {count} times in {m.path}"
    try:
        path.write_text(original.replace(m.old, m.new))
        status, tail = run_tests(root, m.tests, timeout_s)
    finally:
        path.write_text(original)
    return {0: "SURVIVED", 1: "caught"}.get(status, f"broken: pytest exit {status}: {tail}")


def _edited(relative: str) -> bool:
    """True if ``relative`` has uncommitted changes (someone may be editing it: never mutate it in place)."""
    status = subprocess.run(["git", "status", "--porcelain", "--", relative], cwd=REPO, capture_output=True,
                            text=True, check=False)
    return status.returncode != 0 or bool(status.stdout.strip())


def copy_tree(dest: Path) -> Path:
    """Copy the working tree to ``dest/repo`` and link the shared reference data beside it."""
    root = dest / "repo"
    shutil.copytree(REPO, root, ignore=COPY_IGNORE)
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (dest / "shared").symlink_to(shared)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--e2e", action="store_true", help="also the timing mutants that need a real federation")
    parser.add_argument("--only", action="append", default=[], help="run only this mutant (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--in-place", action="store_true", help="mutate this tree (restored after each mutant)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant before it counts as caught")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if (args.e2e or not m.e2e) and (not args.only or m.name in args.only)]
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutants {sorted(unknown)}; see --list")
    if args.list:
        for m in chosen:
            print(f"{m.name:45s} {m.path}: {m.old.strip()!r} -> {m.new.strip()!r}")
        return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    with tempfile.TemporaryDirectory(prefix="harmony-mutate-") as tmp:
        root = REPO if args.in_place else copy_tree(Path(tmp))
        return _check(root, chosen, args.timeout)


def _check(root: Path, chosen: list[Mutant], timeout_s: float) -> int:
    tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    print(f"baseline: {len(tests)} test files on {root}", flush=True)
    status, tail = run_tests(root, tests, timeout_s * 2)
    if status:
        print(f"baseline fails, nothing planted: {tail}")
        return 2
    results = {}
    for m in chosen:
        t0 = time.perf_counter()
        results[m.name] = plant(root, m, timeout_s)
        print(f"{results[m.name]:9s} {m.name:45s} {time.perf_counter() - t0:6.1f} s", flush=True)
    counted = [r for r in results.values() if r in ("caught", "SURVIVED")]
    caught = sum(r == "caught" for r in counted)
    print(f"\ncaught {caught} of {len(counted)} mutants ({100.0 * caught / max(len(counted), 1):.0f} %)")
    survivors = [n for n, r in results.items() if r == "SURVIVED"]
    invalid = [f"{n} ({r})" for n, r in results.items() if r not in ("caught", "SURVIVED")]
    if survivors:
        print("survived: " + ", ".join(survivors))
    if invalid:
        print("not counted (update tools/mutate.py): " + ", ".join(invalid))
        return 2
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
