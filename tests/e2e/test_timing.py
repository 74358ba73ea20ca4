"""Lag-proof timing: every value that crosses HELICS is USED in the interval or slot it was published for.

The exchange table says when a value was published and read; reading is not using. This module compares the
payloads published for interval ``n`` (or slot ``q``/``m``) in the shared runs of ``small.yaml`` and of the first
hour of ``three_vpps.yaml``, where Layer III trades (both recorded with ``HARMONY_RECORD_PAYLOADS=1``, see
``conftest.py``), with what each federate applied in that interval: the
prosumers' recorded commitments and setpoints at dispatch, the feeder's recorded load, the ISO's settlement,
the VPP's corrective caps and award split. A one-step lag anywhere (a federate applying interval ``n - 1``'s
value at ``n``) makes one of these fail, and each test first checks that the run can tell a lag from no lag
(the values differ from one interval or slot to the next).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from federates.common.config import load_scenario
from federates.iso.operator import attribute
from federates.iso.settlement import required_kw, settle_interval
from federates.vpp.delivery import required_kw as vpp_required_kw

pytestmark = pytest.mark.e2e
SCENARIOS = {"small": Path(__file__).with_name("small.yaml"),  # the runs of conftest.py
             "three_vpps": Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "three_vpps.yaml"}
TICK_S, L1_S = 300, 1800
TOL = 1e-9


def table(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / "results" / f"{name}.csv")


@pytest.fixture(scope="module", params=["small", "three_vpps"])
def rec(request):
    """A recorded run (small.yaml; three_vpps.yaml, where Layer III trades): its tables, and its payloads as
    {key: {target: payload dict}}."""
    run_dir, _ = request.getfixturevalue(f"{request.param}_run")
    return _load(run_dir) | {"name": request.param}


def _load(run_dir: Path) -> dict:
    payloads = table(run_dir, "payloads")
    by_key: dict[str, dict[int, dict]] = {}
    for r in payloads.itertuples():
        assert int(r.target) not in by_key.get(r.key, {}), f"{r.key} published twice for target {r.target}"
        by_key.setdefault(r.key, {})[int(r.target)] = json.loads(r.payload)
    by_key |= _merged(by_key)
    hosted = {}
    for path in (run_dir / "federates").glob("prosumers_*.json"):
        hosted[path.stem] = {q["name"] for q in json.loads(path.read_text())["prosumers"]}
    steps = table(run_dir, "prosumer_steps")
    steps["interval"] = (steps.time / TICK_S).round().astype(int)
    feeder = table(run_dir, "feeder_steps")
    feeder["interval"] = (feeder.time / TICK_S).round().astype(int)
    return {"p": by_key, "steps": steps.set_index(["interval", "prosumer"]), "feeder": feeder,
            "ancillary": table(run_dir, "ancillary"), "corrective": table(run_dir, "corrective"),
            "exchange": table(run_dir, "exchange"), "feeders": sorted(feeder.feeder.unique()),
            "members": steps.groupby("feeder").prosumer.unique().to_dict(), "n": int(steps.interval.max()) + 1,
            "hosted": hosted}


def _merged(by_key: dict[str, dict[int, dict]]) -> dict[str, dict[int, dict]]:
    """What a VPP addressed to each of its prosumer federates (``vpp_<f>/<topic>/<federate>``) as one payload per
    target under ``vpp_<f>/<topic>/*``: the per-member dicts of every federate's part, joined."""
    out: dict[str, dict[int, dict]] = {}
    for key, series in by_key.items():
        parts = key.split("/")
        if len(parts) != 3:
            continue
        merged = out.setdefault(f"{parts[0]}/{parts[1]}/*", {})
        for target, payload in series.items():
            whole = merged.setdefault(target, {k: ({} if isinstance(v, dict) else v) for k, v in payload.items()})
            for k, v in payload.items():
                if isinstance(v, dict):
                    assert not set(v) & set(whole[k]), f"{key}: a member addressed twice for {target}"
                    whole[k].update(v)
    return out


def _differs_between_neighbours(series: dict[int, dict]) -> bool:
    """True if the value for some target differs from the one for the target before (a lag would show)."""
    keys = sorted(series)
    return any(series[a] != series[b] for a, b in zip(keys, keys[1:], strict=False))


def _required(rec, vpp: str, n: int) -> float:
    """Signed delivery the ISO asks of ``vpp`` in interval n, from the awards of its slot and n's signal."""
    awards = rec["p"]["iso/awards"].get(n // 3, {}).get("awarded_kw", {}).get(vpp, {})
    signal = rec["p"]["iso/dispatch"][n]
    return vpp_required_kw(awards, signal["regulation"], signal["spin_deployed"])


# ---- VPP -> prosumers: setpoints, reserve, positions --------------------------------------------------------

def test_setpoints_published_for_n_are_applied_at_the_dispatch_of_n(rec):
    for f in rec["feeders"]:
        published = rec["p"][f"vpp_{f}/setpoints/*"]
        deltas = {n: {p: s["delta_p_kw"] for p, s in msg["setpoints"].items()} for n, msg in published.items()}
        assert _differs_between_neighbours(deltas), "the run must ask different deliveries in different intervals"
        for n in range(rec["n"]):
            sp = published.get(n, {"setpoints": {}})["setpoints"]
            for p in rec["members"][f]:
                row = rec["steps"].loc[(n, p)]
                s = sp.get(p, {"delta_p_kw": 0.0, "max_export_kw": None, "max_import_kw": None})
                assert row.delta_p_kw == pytest.approx(s["delta_p_kw"], abs=TOL), (f, n, p)
                if s["max_export_kw"] is not None:
                    assert row.grid_kw <= s["max_export_kw"] + 1e-6, (f, n, p)
                if s["max_import_kw"] is not None:
                    assert -row.grid_kw <= s["max_import_kw"] + 1e-6, (f, n, p)


def test_each_prosumer_federate_is_sent_only_its_own_members(rec):
    """Setpoints, reserve and positions are addressed: a prosumer federate's key carries its members only."""
    addressed = 0
    for key, series in rec["p"].items():
        parts = key.split("/")
        if len(parts) != 3 or parts[2] == "*":
            continue
        mine = rec["hosted"][parts[2]]
        for payload in series.values():
            for value in payload.values():
                if isinstance(value, dict):
                    assert set(value) <= mine, (key, set(value) - mine)
                    addressed += len(value)
    assert addressed > 0


def test_reserve_split_for_slot_q_is_in_force_throughout_q(rec):
    for f in rec["feeders"]:
        published = rec["p"][f"vpp_{f}/reserve/*"]
        assert _differs_between_neighbours(published), "reserve must change between slots for a lag to show"
        for n in range(rec["n"]):
            msg = published.get(n // 3, {"up_kw": {}, "down_kw": {}})
            for p in rec["members"][f]:
                row = rec["steps"].loc[(n, p)]
                assert row.reserve_up_kw == pytest.approx(msg["up_kw"].get(p, 0.0), abs=TOL), (f, n, p)
                assert row.reserve_down_kw == pytest.approx(msg["down_kw"].get(p, 0.0), abs=TOL), (f, n, p)


def test_p2p_positions_for_slot_m_are_the_commitments_of_m(rec):
    traded = 0.0
    for f in rec["feeders"]:
        published = rec["p"][f"vpp_{f}/positions/*"]
        for n in range(rec["n"]):
            net = published.get(n // 6, {"net_kwh": {}})["net_kwh"]
            for p in rec["members"][f]:
                # + bought; the commitment follows the injection convention (+ = sold), spread over 30 min
                expected_kw = -net.get(p, 0.0) / (L1_S / 3600)
                assert rec["steps"].loc[(n, p)].p2p_commit_kw == pytest.approx(expected_kw, abs=TOL), (f, n, p)
        traded += sum(abs(v) for msg in published.values() for v in msg["net_kwh"].values())
    assert traded > 0 or rec["name"] != "small", "peers must trade for the test to mean anything"


# ---- ISO <-> VPP: offers, awards, split ----------------------------------------------------------------------

def test_offers_for_slot_q_are_what_the_iso_cleared_for_q(rec):
    anc = rec["ancillary"]
    cleared = anc[anc.offer_price.notna()]
    for f in rec["feeders"]:
        vpp = f"vpp_{f}"
        offers = rec["p"][f"{vpp}/offers"]
        assert _differs_between_neighbours({q: o["offered_kw"] for q, o in offers.items()}) or rec["name"] != "small"
        for q, offer in offers.items():
            rows = cleared[(cleared.vpp == vpp) & (cleared.slot == q)].set_index("product")
            assert set(rows.index) == set(offer["offered_kw"]), (vpp, q)
            for product, kw in offer["offered_kw"].items():
                assert rows.loc[product, "offered_kw"] == pytest.approx(kw, abs=TOL), (vpp, q, product)
                assert rows.loc[product, "awarded_kw"] == pytest.approx(
                    rec["p"]["iso/awards"][q]["awarded_kw"][vpp].get(product, 0.0), abs=TOL), (vpp, q, product)


def test_the_award_a_vpp_splits_for_slot_q_is_the_one_cleared_for_q(rec):
    awards = rec["p"]["iso/awards"]
    assert _differs_between_neighbours({q: a["awarded_kw"] for q, a in awards.items()})
    split = 0
    for f in rec["feeders"]:
        vpp = f"vpp_{f}"
        for q, msg in rec["p"][f"{vpp}/reserve/*"].items():
            mine = awards[q]["awarded_kw"].get(vpp, {})
            up = mine.get("reg_up", 0.0) + mine.get("spin", 0.0)
            assert sum(msg["up_kw"].values()) == pytest.approx(up, abs=1e-6), (vpp, q)
            assert sum(msg["down_kw"].values()) == pytest.approx(mine.get("reg_down", 0.0), abs=1e-6), (vpp, q)
            split += up > 0
    assert split >= 2, "awards must be split in several slots"


def test_the_vpp_asks_delivery_exactly_when_the_signal_for_n_requires_it(rec):
    """Members are asked to deliver in interval n iff the awards of n's slot and n's dispatch signal (or a
    Layer III credit for n) require it: a signal applied one interval late would ask in the wrong intervals."""
    asked_somewhere = 0
    for f in rec["feeders"]:
        vpp = f"vpp_{f}"
        for n, msg in rec["p"][f"{vpp}/setpoints/*"].items():
            asked = sum(s["delta_p_kw"] for s in msg["setpoints"].values())
            credit = rec["p"]["vpp_market/results"].get(n, {"credit_kwh": {}})["credit_kwh"].get(vpp, 0.0)
            required = _required(rec, vpp, n)
            assert (abs(asked) > TOL) == (abs(required) > TOL or abs(credit) > TOL), (vpp, n, asked, required)
            if abs(asked) > TOL and not credit:
                assert asked * required > 0, (vpp, n, asked, required)
            asked_somewhere += abs(asked) > TOL
    assert asked_somewhere >= 4


def test_layer3_buy_orders_for_n_follow_the_requirement_of_n(rec):
    for f in rec["feeders"]:
        vpp = f"vpp_{f}"
        for n, msg in rec["p"][f"{vpp}/l3_orders"].items():
            required = _required(rec, vpp, n)
            for o in msg["up"]:
                assert o["side"] == "sell" or required > 0, (vpp, n, required)
            for o in msg["down"]:
                assert o["side"] == "sell" or required < 0, (vpp, n, required)


# ---- prosumers -> feeder -> ISO, VPP ------------------------------------------------------------------------

def test_the_feeder_solves_interval_n_with_the_injections_of_n(rec):
    feeder = rec["feeder"].set_index(["feeder", "interval"])
    for f in rec["feeders"]:
        keys = [k for k in rec["p"] if k.startswith(f"prosumers_{f}_") and k.endswith("/injections")]
        assert keys
        for n in range(rec["n"]):
            injected = sum(sum(rec["p"][k][n]["p_kw"].values()) for k in keys)
            dispatched = sum(rec["steps"].loc[(n, p)].grid_kw for p in rec["members"][f])
            assert injected == pytest.approx(dispatched, abs=1e-6), (f, n)
            assert feeder.loc[(f, n)].members_p_kw == pytest.approx(injected, abs=1e-6), (f, n)
            state = rec["p"][f"feeder_{f}/state"][n]
            assert state["members_p_kw"] == pytest.approx(injected, abs=1e-6), (f, n)
            assert state["v_max_pu"] == pytest.approx(feeder.loc[(f, n)].v_max_pu, abs=TOL), (f, n)
        states = rec["p"][f"feeder_{f}/state"]
        assert _differs_between_neighbours({n: s["members_p_kw"] for n, s in states.items()})


def test_the_iso_settles_interval_n_with_the_state_signal_and_layer3_result_of_n(rec):
    """Recompute every settlement row from the payloads meant for its interval: the feeder state of n, the
    dispatch signal of n, the Layer III credit of n, the awards and baseline of n's slot, and the penalty
    multiplier of the scenario."""
    multiplier = load_scenario(SCENARIOS[rec["name"]]).iso.penalty_multiplier
    anc = rec["ancillary"]
    settled = anc[anc.delivered_kw.notna()]
    assert len(settled) >= 10
    asked = credited = 0
    for (t, vpp), rows in settled.groupby(["time", "vpp"]):
        n = round(t / TICK_S)
        q = n // 3
        state = rec["p"][f"feeder_{vpp.removeprefix('vpp_')}/state"][n]
        signal = rec["p"]["iso/dispatch"].get(n, {"regulation": 0.0, "spin_deployed": 0.0})
        credit = rec["p"]["vpp_market/results"].get(n, {"credit_kwh": {}})["credit_kwh"].get(vpp, 0.0)
        awards = {p: kw for p, kw in rec["p"]["iso/awards"][q]["awarded_kw"][vpp].items() if kw > 0}
        baseline = rec["p"][f"{vpp}/offers"][q]["baseline_p_kw"]
        required = required_kw(awards, signal["regulation"], bool(signal["spin_deployed"]))
        delivered = attribute(state["members_p_kw"] - baseline + credit * 3600 / TICK_S, required)
        prices = rec["p"]["iso/awards"][q]["clearing_price_per_mw_h"]
        expected = settle_interval(awards, prices, required, delivered, penalty_multiplier=multiplier)
        credited += credit != 0
        rows = rows.set_index("product")
        assert set(rows.index) == set(awards), (n, vpp)
        for p in awards:
            assert rows.loc[p, "delivered_kw"] == pytest.approx(delivered[p], abs=1e-6), (n, vpp, p)
            assert rows.loc[p, "performance"] == pytest.approx(expected.performance_score[p], abs=1e-9), (n, vpp)
            assert rows.loc[p, "penalty"] == pytest.approx(expected.penalty[p], abs=1e-12), (n, vpp, p)
            asked += required[p] > 0
    assert asked >= 3, "the ISO must ask for delivery in several settled intervals"
    assert credited > 0 or rec["name"] == "small", "Layer III must credit some settled interval"


def test_corrective_caps_measured_in_n_are_in_the_setpoints_for_n_plus_1(rec):
    corrective = rec["corrective"]
    assert len(corrective) >= 1, "the run must take at least one corrective action"
    for c in corrective.itertuples():
        n = round(c.time / TICK_S)
        state = rec["p"][f"feeder_{c.feeder}/state"][n]
        assert c.value == pytest.approx(state["v_pu"][c.prosumer], abs=TOL), "measured on the state of n"
        nxt = rec["p"][f"vpp_{c.feeder}/setpoints/*"].get(n + 1)
        if nxt is None:  # the run ended
            assert n + 1 == rec["n"]
            continue
        # every change (cap, relax, release) is in force at n + 1: both caps as recorded (none = no cap)
        sp = nxt["setpoints"].get(c.prosumer, {"max_export_kw": None, "max_import_kw": None})
        for field in ("max_export_kw", "max_import_kw"):
            recorded = getattr(c, field)
            if pd.isna(recorded):
                assert sp[field] is None, (c.prosumer, n, c.kind, field)
            else:
                assert sp[field] == pytest.approx(recorded, abs=TOL), (c.prosumer, n, c.kind, field)


# ---- causal order of the phases, from the exchange record ---------------------------------------------------

def _rows(ex, action: str, key_suffix: str, target: int, federate_prefix: str = "") -> pd.DataFrame:
    key = ex.key.str.endswith(key_suffix) | ex.key.str.contains(key_suffix + "/", regex=False)  # or addressed
    return ex[(ex.action == action) & key & (ex.target == target) & ex.federate.str.startswith(federate_prefix)]


def _in_order(cause: pd.DataFrame, effect: pd.DataFrame, same_federate: bool) -> bool:
    """Between federates the effect is at a later second; inside one federate (one grant may hold both) it is
    recorded after the cause (the exchange table keeps each federate's rows in the order they were recorded)."""
    if not same_federate:
        return cause.time.max() < effect.time.min()
    for fed, mine in effect.groupby("federate"):
        theirs = cause[cause.federate == fed]
        last_cause = max(zip(theirs.time, theirs.index, strict=True), default=None)
        if last_cause is not None and last_cause >= min(zip(mine.time, mine.index, strict=True)):
            return False
    return True


@pytest.mark.parametrize("before, after, shift", [
    # (action, key, federate) of the cause, then of the effect, and the effect's target minus the cause's
    (("publish", "/injections", "prosumers_"), ("read", "/injections", "feeder_"), 0),
    (("publish", "/state", "feeder_"), ("read", "/state", "iso"), 0),  # read at the start of the next tick
    (("read", "/state", "vpp_"), ("publish", "/l3_orders", "vpp_"), 1),
    (("read", "/state", "vpp_"), ("publish", "/setpoints", "vpp_"), 1),
    (("publish", "iso/dispatch", "iso"), ("read", "iso/dispatch", "vpp_"), 0),
    (("read", "iso/dispatch", "vpp_"), ("publish", "/l3_orders", "vpp_"), 0),
    (("publish", "/l3_orders", "vpp_"), ("publish", "vpp_market/results", "vpp_market"), 0),
    (("publish", "vpp_market/results", "vpp_market"), ("publish", "/setpoints", "vpp_"), 0),
    (("publish", "/setpoints", "vpp_"), ("read", "/setpoints", "prosumers_"), 0),
])
def test_every_tick_runs_its_phases_in_causal_order(rec, before, after, shift):
    ex = rec["exchange"]
    checked = 0
    for n in range(1, rec["n"] - 1):
        cause = _rows(ex, before[0], before[1], n, before[2])
        effect = _rows(ex, after[0], after[1], n + shift, after[2])
        if len(cause) and len(effect):
            assert _in_order(cause, effect, before[2] == after[2]), (n, before, after)
            assert effect.time.max() - cause.time.min() < TICK_S, "the effect belongs to the same tick"
            checked += 1
    assert checked >= rec["n"] - 4, f"{before} -> {after} seen in only {checked} ticks"


# ---- transmission <-> feeders (T&D, the td run of conftest.py) ----------------------------------------------

@pytest.fixture(scope="module")
def td(td_run):
    """The recorded T&D run: its tables and payloads as ``rec``, each attached feeder's link (bus, copies, tap) and
    the source voltage of interval 0 it was built with."""
    run_dir, _ = td_run
    config = json.loads((run_dir / "federates" / "transmission.json").read_text())
    links = {x["feeder"]: x for x in config["links"]}
    initial = {f: json.loads((run_dir / "federates" / f"feeder_{f}.json").read_text())["v_source_pu_initial"]
               for f in links}
    return _load(run_dir) | {"links": links, "initial": initial, "buses": table(run_dir, "transmission")}


def test_the_source_voltage_published_for_n_is_the_one_the_feeder_applies_in_n(td):
    published = td["p"]["transmission/voltages"]
    assert sorted(published) == list(range(1, td["n"])), "one solution for every interval after the first"
    feeder = td["feeder"].set_index(["feeder", "interval"])
    assert set(td["links"]) == set(td["feeders"])
    for f in td["links"]:
        assert _differs_between_neighbours({n: m["v_source_pu"][f] for n, m in published.items()}), f
        for n in range(td["n"]):
            want = td["initial"][f] if n == 0 else published[n]["v_source_pu"][f]
            assert feeder.loc[(f, n)].v_source_pu == pytest.approx(want, abs=1e-9), (f, n)


def test_the_transmission_solves_n_plus_1_with_the_feeders_head_power_of_n(td):
    buses = td["buses"]
    for f, link in td["links"].items():
        at_bus = buses[buses.bus == link["bus"]].set_index("time")
        states = td["p"][f"feeder_{f}/state"]
        assert _differs_between_neighbours({n: s["p_head_kw"] for n, s in states.items()})
        for n in range(td["n"] - 1):
            row = at_bus.loc[(n + 1) * TICK_S]
            assert row.feeder == f
            assert row.feeders_p_mw == pytest.approx(link["copies"] * states[n]["p_head_kw"] / 1000, rel=1e-9), (f, n)
            assert row.feeders_q_mvar == pytest.approx(link["copies"] * states[n]["q_head_kvar"] / 1000, rel=1e-9)
            # and what it published for n + 1 is that solution, through the feeder's fixed tap
            sent = td["p"]["transmission/voltages"][n + 1]
            assert sent["bus_v_pu"][f] == pytest.approx(row.v_pu, abs=1e-12), (f, n)
            assert sent["v_source_pu"][f] == pytest.approx(link["tap_pu"] * row.v_pu, abs=1e-12), (f, n)


def test_the_transmission_publishes_between_the_feeders_state_of_n_and_their_solve_of_n_plus_1(td):
    ex = td["exchange"]
    for n in range(td["n"] - 1):
        state = _rows(ex, "publish", "/state", n, "feeder_").time
        solved = _rows(ex, "publish", "transmission/voltages", n + 1, "transmission").time
        applied = _rows(ex, "read", "transmission/voltages", n + 1, "feeder_").time
        assert len(solved) == 1 and len(applied) == len(td["links"]), n
        assert state.max() < solved.min() < applied.min() and applied.max() - state.min() <= TICK_S, n
