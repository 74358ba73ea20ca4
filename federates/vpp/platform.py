"""The community VPP as a plain object: the feeder's P2P platform (Layer I), its ancillary bidder and
dispatcher (Layer II), its Layer III trader and its voltage guard. No HELICS here; ``federate.py`` drives it.

Revenue rule (non-profit): every cent of ancillary income, net of penalties and the documented platform fee
(``fee_fraction``), is passed to members pro rata to the reserve capacity they were committed for. Guarantee
("nobody worse off"): at the end of the run every member left worse off than under top-down is topped up to its
top-down cost by the members who gained (:func:`federates.vpp.aggregation.guarantee_transfers`, settled in
:mod:`runner.ledger` from each member's top-down twin).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from federates.common.config import MarketConfig, VppConfig
from federates.common.messages import MemberPlan, SetpointMsg
from federates.prosumer.devices import TariffConfig
from federates.vpp.aggregation import MemberFlex, disaggregate
from federates.vpp.ancillary_bidding import BiddingDecision, BiddingInput, decide_offers
from federates.vpp.corrective import Action, CorrectiveController
from federates.vpp.delivery import L3Need, layer3_needs, member_target_kw, required_kw
from federates.vpp.p2p_market import ClearingResult, Order, Rejection, Submission, clear, screen_orders

UP_PRODUCTS = ("reg_up", "spin")
# Members price their flexibility per kWh ACTIVATED; the ISO pays for capacity HELD. The VPP converts with
# the expected share of held capacity that is deployed (mean up-regulation of a zero-mean signal ~ 0.25).
EXPECTED_DEPLOYMENT = 0.25
SPARE_MARGIN_PER_KWH = 0.01
DEFAULT_PRICE_FORECAST = {"reg_up": 15.0, "reg_down": 6.0, "spin": 8.0}


@dataclass
class Layer1Outcome:
    orders: list[Order]
    rejections: list[Rejection]
    result: ClearingResult
    net_kwh: dict[str, float]


@dataclass
class CommunityVpp:
    name: str
    members: dict[str, str]                     # member -> hosting prosumer federate (its identity)
    market: MarketConfig
    config: VppConfig
    tariff: TariffConfig
    penalty_multiplier: float
    trade_distance: dict[str, float] = field(default_factory=dict)
    seed: int = 0                               # scenario seed: pay_as_bid's tie-break among equal submission times
    plans: dict[int, dict[str, MemberPlan]] = field(default_factory=dict)      # L1 slot -> member -> plan
    awards: dict[int, dict[str, float]] = field(default_factory=dict)          # L2 slot -> product -> kW
    prices: dict[int, dict[str, float]] = field(default_factory=dict)          # L2 slot -> product -> $/MW-h
    reserve: dict[int, tuple[dict[str, float], dict[str, float]]] = field(default_factory=dict)
    baseline_kw: dict[int, float] = field(default_factory=dict)                # L2 slot -> declared baseline
    guard: CorrectiveController = field(default_factory=CorrectiveController)
    last_drift_kw: float = 0.0
    last_p_kw: dict[str, float] = field(default_factory=dict)                # latest metered net injection
    headroom_up_kw: dict[str, float] = field(default_factory=dict)           # latest meter-reported headroom
    headroom_down_kw: dict[str, float] = field(default_factory=dict)

    # ---- Layer I ---------------------------------------------------------------------------------------------
    def clear_layer1(self, submissions: list[Submission], gate_s: float, hour: float) -> Layer1Outcome:
        floor, cap = self.tariff.buyback_price_per_kwh, self.tariff.retail_at(hour)
        orders, rejections = screen_orders(submissions, gate_s=gate_s, hosts=self.members,
                                           price_floor_per_kwh=floor, price_cap_per_kwh=cap)
        result = clear(orders, self.market.mechanism, price_floor_per_kwh=floor, price_cap_per_kwh=cap,
                       k=self.market.k, trade_cost_per_kwh=self._trade_costs(orders), seed=self.seed)
        net: dict[str, float] = {}
        for t in result.trades:
            net[t.buyer] = net.get(t.buyer, 0.0) + t.energy_kwh
            net[t.seller] = net.get(t.seller, 0.0) - t.energy_kwh
        return Layer1Outcome(orders, rejections, result, net)

    def _trade_costs(self, orders: list[Order]) -> dict[tuple[str, str], float] | None:
        """Bilateral product differentiation: a network charge proportional to the electrical distance."""
        if self.market.trade_cost_per_kwh <= 0:
            return None
        buyers = {o.participant for o in orders if o.side == "buy"}
        sellers = {o.participant for o in orders if o.side == "sell"}
        d = self.trade_distance
        return {(b, s): self.market.trade_cost_per_kwh * abs(d.get(b, 0.0) - d.get(s, 0.0))
                for b in buyers for s in sellers}

    def take_plans(self, plans: list[MemberPlan]) -> None:
        for plan in plans:
            if plan.member in self.members:
                self.plans.setdefault(plan.slot, {})[plan.member] = plan

    # ---- Layer II --------------------------------------------------------------------------------------------
    def member_flex(self, l2_slot: int) -> list[MemberFlex]:
        l1_slot, half = divmod(l2_slot, 2)
        return [MemberFlex(member=m, up_kw=p.up_kw, down_kw=p.down_kw,
                           price_per_kwh=p.price_per_kwh * EXPECTED_DEPLOYMENT, planned_p_kw=p.planned_p_kw[half])
                for m, p in sorted(self.plans.get(l1_slot, {}).items())]

    def offers(self, l2_slot: int, hour: float) -> tuple[BiddingDecision, float]:
        """Offers for ``l2_slot``: members' planned flexibility, each limited by what it can physically
        deliver now (meter-reported headroom, corrective caps), so the VPP never sells what it cannot give."""
        up, down = self.member_capability(l2_slot * 3)
        flex = [replace(f, up_kw=up.get(f.member, 0.0), down_kw=down.get(f.member, 0.0))
                for f in self.member_flex(l2_slot)]
        forecast = self.prices.get(l2_slot - 1) or self.prices.get(l2_slot - 2) or DEFAULT_PRICE_FORECAST
        decision = decide_offers(BiddingInput(
            members=flex, price_forecast_per_mw_h=forecast, energy_price_per_kwh=self.tariff.retail_at(hour),
            min_offer_kw=self.config.min_offer_kw, delivery_risk=self.config.delivery_risk,
            penalty_multiplier=self.penalty_multiplier))
        baseline = sum(f.planned_p_kw for f in flex)
        self.baseline_kw[l2_slot] = baseline
        return decision, baseline

    def take_awards(self, l2_slot: int, awarded_kw: dict[str, float], prices: dict[str, float]):
        """Record the awards and split them over members pro rata to the flexibility each offered."""
        self.awards[l2_slot] = dict(awarded_kw)
        self.prices[l2_slot] = dict(prices)
        flex = self.member_flex(l2_slot)
        up_total = sum(awarded_kw.get(p, 0.0) for p in UP_PRODUCTS)
        up = disaggregate(up_total, {f.member: f.up_kw for f in flex}) if up_total > 0 else {}
        down_total = awarded_kw.get("reg_down", 0.0)
        down = disaggregate(down_total, {f.member: f.down_kw for f in flex}) if down_total > 0 else {}
        self.reserve[l2_slot] = (up, down)
        return up, down

    # ---- Layer III and real-time dispatch ---------------------------------------------------------------------
    def required(self, interval: int, regulation: float, spin_deployed: float) -> float:
        return required_kw(self.awards.get(interval // 3, {}), regulation, spin_deployed)

    def layer3_needs(self, interval: int, required: float, penalty_price_per_mw_h: float) -> list[L3Need]:
        """Layer III orders for ``interval``: capability is all the flexibility members offered for the slot
        (committed reserve plus the rest); a shortfall is bought at up to the penalty per kWh, spare
        capability is sold at the members' opportunity cost (their value of energy above the buy-back rate,
        which is what they are paid for the extra export), weighted by the flexibility each offered."""
        flex = self.member_flex(interval // 3)
        up_cap, down_cap = self.capability(interval)
        buyback = self.tariff.buyback_price_per_kwh
        costs = [(max(f.price_per_kwh / EXPECTED_DEPLOYMENT - buyback, 0.0), f.up_kw + f.down_kw) for f in flex]
        weight = sum(w for _, w in costs)
        spare_price = sum(c * w for c, w in costs) / weight if weight > 0 else 0.0
        return layer3_needs(required, up_cap, down_cap, self.last_drift_kw, period_s=300,
                            penalty_price_per_kwh=penalty_price_per_mw_h / 1000.0 * self.penalty_multiplier,
                            spare_price_per_kwh=spare_price + SPARE_MARGIN_PER_KWH)

    def member_capability(self, interval: int) -> tuple[dict[str, float], dict[str, float]]:
        """Up and down kW each member can deliver in ``interval``: what it offered for the slot, limited by
        the headroom its meter last reported (state of charge, battery power) and by what a corrective cap
        leaves room for (a member whose export is capped for over-voltage cannot deliver up)."""
        up, down = {}, {}
        for f in self.member_flex(interval // 3):
            m, p = f.member, self.last_p_kw.get(f.member, 0.0)
            cap_e, cap_i = self.guard.export_cap_kw.get(m), self.guard.import_cap_kw.get(m)
            up[m] = min(f.up_kw, self.headroom_up_kw.get(m, f.up_kw))
            down[m] = min(f.down_kw, self.headroom_down_kw.get(m, f.down_kw))
            if cap_e is not None:
                up[m] = min(up[m], max(cap_e - p, 0.0))
            if cap_i is not None:
                down[m] = min(down[m], max(cap_i + p, 0.0))
        return up, down

    def capability(self, interval: int) -> tuple[float, float]:
        up, down = self.member_capability(interval)
        return sum(up.values()), sum(down.values())

    def member_target(self, interval: int, required: float, credit_kw: float) -> float:
        up, down = self.capability(interval)
        return member_target_kw(required, credit_kw, self.last_drift_kw, up, down)

    def setpoints(self, interval: int, asked_kw: float) -> dict[str, SetpointMsg]:
        """Members' setpoints: ``asked_kw`` split over the members' offered flexibility (pro rata, never above
        what a member can deliver), plus corrective caps."""
        up, down = self.member_capability(interval)
        if asked_kw >= 0:
            share = disaggregate(asked_kw, up)
        else:
            share = {m: -kw for m, kw in disaggregate(-asked_kw, down).items()}
        out = {}
        for m in self.members:
            delta = share.get(m, 0.0)
            cap_e, cap_i = self.guard.export_cap_kw.get(m), self.guard.import_cap_kw.get(m)
            if delta or cap_e is not None or cap_i is not None:
                out[m] = SetpointMsg(delta_p_kw=delta, max_export_kw=cap_e, max_import_kw=cap_i)
        return out

    def activation_cost(self, interval: int, member: str, delta_kw: float, hour: float) -> float:
        """$ per kWh a member gives up when asked to deliver ``delta_kw`` (documented compensation rule).

        Up (more injection): it exports energy it values at its marginal value lambda (from its plan) and is
        paid the export credit for it: ``max(lambda - export credit, 0)``. Down (less injection): it stores
        energy worth lambda to it, bought at retail if it planned to import or forgone export credit if it
        planned to export: ``max(price - lambda, 0)``.
        """
        plan = self.plans.get(interval // 6, {}).get(member)
        if plan is None:
            return 0.0
        lam, export_credit = plan.price_per_kwh, self.tariff.export_price_at(hour)
        if delta_kw >= 0:
            return max(lam - export_credit, 0.0)
        planned_p = plan.planned_p_kw[(interval // 3) % 2]
        price = export_credit if planned_p > 0 else self.tariff.retail_at(hour)
        return max(price - lam, 0.0)

    def observe(self, interval: int, v_pu: dict[str, float], p_kw: dict[str, float], members_p_kw: float,
                asked_kw: float) -> list[Action]:
        """After a power flow: update the drift forecast (metered deviation from the baseline that members
        were not asked for) and the corrective caps."""
        self.last_p_kw = dict(p_kw)
        baseline = self.baseline_kw.get(interval // 3)
        if baseline is not None:
            self.last_drift_kw = members_p_kw - baseline - asked_kw
        return self.guard.update(v_pu, p_kw) if self.config.corrective else []
