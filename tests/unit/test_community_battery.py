"""The community battery (issue #15): its state of charge, dispatch, settlement, place in the VPP's offers and
awards, its element on the feeder and how its stored energy reaches the members."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from federates.common.config import CommunityBatteryConfig, MarketConfig, VppConfig
from federates.common.messages import MemberPlan
from federates.prosumer.devices import TariffConfig, TouPeriod
from federates.vpp.ancillary_bidding import BATTERY
from federates.vpp.community_battery import CommunityBattery, energy_settlement
from federates.vpp.platform import CommunityVpp
from runner import storage

CFG = CommunityBatteryConfig(kwh=100.0, kw=50.0, bus="f2_n07", soc_init_frac=0.5, eta_charge=0.9, eta_discharge=0.8)
H = 300 / 3600
SUBURB = Path(__file__).resolve().parents[2] / "feeders" / "lv_suburb" / "Master.dss"


def test_state_of_charge_follows_power_and_efficiencies_by_hand():
    b = CommunityBattery(CFG)
    assert b.soc_kwh == 50.0
    assert b.dispatch(1, -30.0) == -30.0
    assert b.soc_kwh == pytest.approx(50.0 + 30.0 * H * 0.9)         # charging stores eta_c of what it draws
    assert b.dispatch(2, 40.0) == 40.0
    assert b.soc_kwh == pytest.approx(52.25 - 40.0 * H / 0.8)        # discharging draws 1 / eta_d
    assert b.dispatched == {1: -30.0, 2: 40.0}


def test_dispatch_is_clamped_to_power_and_energy():
    b = CommunityBattery(CFG)
    assert b.dispatch(1, 80.0) == 50.0                               # power limit
    b.soc_kwh = 1.0
    assert b.dispatch(2, 50.0) == pytest.approx(1.0 * 0.8 / H)       # only what is stored (9.6 kW for 5 min)
    assert b.soc_kwh == pytest.approx(0.0)
    b.soc_kwh = 99.5
    assert b.dispatch(3, -50.0) == pytest.approx(-0.5 / (0.9 * H))   # only the room left
    assert b.soc_kwh == pytest.approx(100.0)
    assert b.headroom_kw(0.0) == (pytest.approx(50.0), 0.0)


def test_energy_settlement_uses_the_community_position():
    # charging 30 kW while members export 20 kW: 20 kW at the export credit, 10 kW at retail, for 5 minutes
    kwh, amount = energy_settlement(-30.0, 20.0, retail_per_kwh=0.3, export_per_kwh=0.04)
    assert kwh == pytest.approx(2.5) and amount == pytest.approx(-(20 * 0.04 + 10 * 0.3) * H)
    # discharging 30 kW while members import 50 kW: all displaces imports, credited at retail
    kwh, amount = energy_settlement(30.0, -50.0, retail_per_kwh=0.3, export_per_kwh=0.04)
    assert amount == pytest.approx(30 * 0.3 * H)
    # discharging while the members export: exported, credited at the export credit
    assert energy_settlement(30.0, 5.0, 0.3, 0.04)[1] == pytest.approx(30 * 0.04 * H)
    assert energy_settlement(0.0, 5.0, 0.3, 0.04) == (0.0, 0.0)


def _tariff() -> TariffConfig:
    tou = [TouPeriod(start_h=h, price_per_kwh=c) for h, c in ((0, 0.12), (7, 0.18), (17, 0.30), (21, 0.15))]
    return TariffConfig(retail_tou=tou, buyback_price_per_kwh=0.04)


def _vpp(battery: bool = True) -> CommunityVpp:
    members = {"a": "pf0", "b": "pf0"}
    cfg = VppConfig(min_offer_kw=50.0, community_battery=CFG if battery else None)
    vpp = CommunityVpp(name="vpp_f", members=members, market=MarketConfig(), config=cfg, tariff=_tariff(),
                       penalty_multiplier=10.0)
    # slot 24 (12:00-12:30): both members export 10 kW, 10 kW of flexibility each way, own value 0.05 $/kWh
    vpp.take_plans([MemberPlan(member=m, slot=24, planned_p_kw=(10.0, 10.0), up_kw=10.0, down_kw=10.0,
                               price_per_kwh=0.05) for m in members])
    return vpp


def test_vpp_offers_with_its_battery_and_declares_its_baseline():
    vpp = _vpp()
    decision, baseline = vpp.offers(48, hour=12.0)
    # the community is long: the battery charges from the 20 kW surplus and both back the offers
    assert decision.battery_baseline_kw == pytest.approx(-20.0)
    assert baseline == pytest.approx(20.0 - 20.0)
    assert sum(decision.offers_kw.values()) > 0
    assert any(BATTERY in c for c in decision.contributions_kw.values())
    again, _ = vpp.offers(48, hour=12.0)
    assert vpp.offer_model is not None and again.offers_kw == decision.offers_kw   # the kept model re-solves
    without, base0 = _vpp(battery=False).offers(48, hour=12.0)
    assert base0 == pytest.approx(20.0) and without.battery_baseline_kw == 0.0


def test_awards_are_split_over_members_and_battery_as_they_backed_them():
    vpp = _vpp()
    decision, _ = vpp.offers(48, hour=12.0)
    awarded = {p: kw / 2 for p, kw in decision.offers_kw.items()}
    up, down = vpp.take_awards(48, awarded, {"reg_up": 20.0, "reg_down": 6.0, "spin": 11.0})
    b_up, b_down = vpp.battery_reserve[48]
    assert math.fsum(up.values()) + b_up == pytest.approx(awarded["reg_up"] + awarded["spin"])
    assert math.fsum(down.values()) + b_down == pytest.approx(awarded["reg_down"])
    assert BATTERY not in up and BATTERY not in down


def test_battery_delivers_its_share_and_helps_at_over_voltage():
    vpp = _vpp()
    decision, _ = vpp.offers(48, hour=12.0)
    vpp.take_awards(48, dict(decision.offers_kw), {})
    interval = 48 * 3
    up, _ = vpp.member_capability(interval)
    vpp.setpoints(interval, asked_kw=sum(up.values()))              # full up deployment
    p, base, delivery, corrective = vpp.dispatch_battery(interval)
    assert delivery == pytest.approx(up[BATTERY]) and corrective == 0.0
    assert p == pytest.approx(base + delivery)
    # no award in the next slot and a member's export capped for over-voltage: the battery charges fully
    vpp.observe(49 * 3, {"a": 1.06, "b": 1.0}, {"a": 10.0, "b": 10.0}, 20.0, 0.0)
    assert vpp.guard.export_cap_kw and vpp.voltage_state == "high"
    assert vpp.member_capability(48 * 3)[0][BATTERY] == 0.0          # no up delivery from it meanwhile
    p, base, delivery, corrective = vpp.dispatch_battery(49 * 3)
    assert p == pytest.approx(-50.0) and corrective < 0
    vpp.observe(49 * 3 + 1, {"a": 1.0, "b": 1.0}, {"a": 10.0, "b": 10.0}, 20.0, 0.0)
    assert vpp.voltage_state is None and vpp.dispatch_battery(49 * 3 + 1)[3] == 0.0   # lingering caps: no action


def test_stored_energy_reaches_members_like_the_revenue():
    cb = pd.DataFrame({"time": [300, 600], "vpp": "vpp_f", "p_kw": [-12.0, -12.0], "soc_kwh": [51.0, 52.0],
                       "eta_charge": 1.0, "eta_discharge": 1.0})
    steps = pd.DataFrame({"time": [0, 0, 0], "prosumer": ["a", "b", "c"], "reserve_up_kw": [3.0, 1.0, 0.0],
                          "reserve_down_kw": [0.0, 0.0, 0.0]})
    members = {"a": "vpp_f", "b": "vpp_f", "c": "vpp_g"}
    units = storage.community_batteries(cb)
    assert units.loc["vpp_f", "battery_start_kwh"] == pytest.approx(50.0)
    values = storage.community_battery_stored_value(cb, steps, members, (0.2, 0.05))
    worth = 2.0 * 0.05                                               # +2 kWh, worth the export credit
    assert values.to_dict() == pytest.approx({"a": 0.75 * worth, "b": 0.25 * worth, "c": 0.0})


def test_battery_element_is_in_the_power_flow():
    from federates.feeder.model import FeederModel

    m = FeederModel(SUBURB, injectors=["f2_n07"])
    m.place_prosumers(2, seed=1)
    idle = m.solve().p_head_kw
    m.set_injections({m.injectors[0]: 30.0})                         # 30 kW discharged at f2_n07
    state = m.solve()
    assert idle - state.p_head_kw == pytest.approx(30.0, rel=0.05)    # the head supplies ~30 kW less
    assert m.load_power_kw()[m.injectors[0]] == pytest.approx(-30.0, rel=1e-3)
    m.close()


def test_member_flex_follows_plans_that_replace_earlier_ones():
    """The VPP keeps each slot's members' flexibility between the real-time steps that ask for it, but a plan
    that arrives later for the same slot (replacing a member's plan or adding a member) is what it uses next."""
    vpp = _vpp()
    assert [f.up_kw for f in vpp.member_flex(48, 12.0)] == [10.0, 10.0]
    vpp.take_plans([MemberPlan(member="a", slot=24, planned_p_kw=(10.0, 10.0), up_kw=3.0, down_kw=10.0,
                               price_per_kwh=0.05)])
    assert [f.up_kw for f in vpp.member_flex(48, 12.0)] == [3.0, 10.0]
    assert [f.up_kw for f in vpp.member_flex(49)] == [3.0, 10.0]
    assert vpp.member_capability(48 * 3)[0]["a"] == 3.0
