"""The community VPP as a plain object: the feeder's P2P platform (Layer I), its ancillary bidder and
dispatcher (Layer II), its Layer III trader, its voltage guard and the operator of its community battery
(:mod:`federates.vpp.community_battery`). No HELICS here; ``federate.py`` drives it.

Members' asks for holding flexibility (``member_flex``): the expected compensation the VPP will pay them for
deployed energy (:meth:`CommunityVpp.activation_cost`: up ``max(lambda - export credit, 0)``, down
``max(price - lambda, 0)`` per kWh) times the expected deployed share of held capacity, so a member long in
energy asks nothing for reg_down (absorbing costs it only the forgone export credit) and the VPP never offers
what it expects to pay out more for than it earns.

Revenue rule (non-profit): every cent of ancillary income, net of penalties and the documented platform fee
(``fee_fraction``), is passed to members pro rata to the reserve capacity they were committed for. Guarantee
("nobody worse off"): at the end of the run every member left worse off than under top-down is topped up to its
top-down cost by the members who gained (:func:`federates.vpp.aggregation.guarantee_transfers`, settled in
:mod:`runner.ledger` from each member's top-down twin).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from federates.common.config import MarketConfig, VppConfig
from federates.common.messages import MemberPlan, SetpointMsg
from federates.prosumer.devices import TariffConfig
from federates.vpp.aggregation import MemberFlex, disaggregate
from federates.vpp.ancillary_bidding import BATTERY, PRODUCTS, BiddingDecision, BiddingInput, OfferModel
from federates.vpp.community_battery import CommunityBattery
from federates.vpp.corrective import Action, CorrectiveController
from federates.vpp.delivery import L3Need, layer3_needs, member_target_kw, required_kw
from federates.vpp.p2p_market import ClearingResult, Order, Rejection, Submission, clear, screen_orders
from federates.vpp.preferences import pair_premia

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
class _Flex:
    """Members' flexibility for one Layer II slot (:meth:`CommunityVpp.member_flex`) and what is derived from it
    alone, kept with it: its columns and the price of spare capability offered in Layer III."""

    flex: tuple[MemberFlex, ...]
    spare_price_per_kwh: float | None = None

    @cached_property
    def columns(self) -> tuple[list[str], list[float], list[float], frozenset[str]]:
        """(members, up_kw, down_kw) in the members' order, and the members as a set."""
        names = [f.member for f in self.flex]
        return names, [f.up_kw for f in self.flex], [f.down_kw for f in self.flex], frozenset(names)


@dataclass
class CommunityVpp:
    name: str
    members: dict[str, str]                     # member -> hosting prosumer federate (its identity)
    market: MarketConfig
    config: VppConfig
    tariff: TariffConfig
    penalty_multiplier: float
    trade_distance: dict[str, float] = field(default_factory=dict)
    trade_premium: dict[str, dict[str, float]] = field(default_factory=dict)  # buyer -> seller -> premium per kWh
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
    battery: CommunityBattery | None = None
    battery_delta_kw: dict[int, float] = field(default_factory=dict)      # interval -> the battery's delivery
    voltage_state: str | None = None          # "high" / "low": the guard capped an export / import at the last step
    decisions: dict[int, BiddingDecision] = field(default_factory=dict)        # L2 slot -> the offer model's
    battery_reserve: dict[int, tuple[float, float]] = field(default_factory=dict)  # L2 slot -> battery up, down
    offer_model: OfferModel | None = None
    _flex_cache: dict[int, dict[tuple, _Flex]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.battery is None and self.config.community_battery is not None:
            self.battery = CommunityBattery(self.config.community_battery)

    # ---- Layer I ---------------------------------------------------------------------------------------------
    def clear_layer1(self, submissions: list[Submission], gate_s: float, hour: float) -> Layer1Outcome:
        floor, cap = self.tariff.buyback_price_per_kwh, self.tariff.retail_at(hour)
        orders, rejections = screen_orders(submissions, gate_s=gate_s, hosts=self.members,
                                           price_floor_per_kwh=floor, price_cap_per_kwh=cap)
        result = clear(orders, self.market.mechanism, price_floor_per_kwh=floor, price_cap_per_kwh=cap,
                       k=self.market.k, trade_cost_per_kwh=self._trade_costs(orders), seed=self.seed,
                       premium_per_kwh=self._trade_premia(orders))
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

    def _trade_premia(self, orders: list[Order]) -> dict[tuple[str, str], float]:
        """Bilateral product differentiation: the premia members stated for sellers of this slot's book
        (:mod:`federates.vpp.preferences`); empty when nobody states one."""
        return pair_premia(self.trade_premium, {o.participant for o in orders if o.side == "buy"},
                           {o.participant for o in orders if o.side == "sell"})

    def take_plans(self, plans: list[MemberPlan]) -> None:
        for plan in plans:
            if plan.member in self.members:
                self.plans.setdefault(plan.slot, {})[plan.member] = plan
                self._flex_cache.pop(plan.slot, None)

    # ---- Layer II --------------------------------------------------------------------------------------------
    def member_flex(self, l2_slot: int, hour: float | None = None) -> tuple[MemberFlex, ...]:
        """Members' planned flexibility for ``l2_slot``; with ``hour``, asks from the compensation rule (module
        docstring), else their own price per kWh times the expected deployment. Kept until new plans for the
        slot arrive (:meth:`take_plans`): the real-time steps ask for it several times per interval."""
        return self._flex(l2_slot, hour).flex

    def _flex(self, l2_slot: int, hour: float | None = None) -> _Flex:
        l1_slot = l2_slot // 2
        if l1_slot not in self._flex_cache:
            for old in [k for k in self._flex_cache if k < l1_slot - 1]:  # slots gone by
                del self._flex_cache[old]
        cached = self._flex_cache.setdefault(l1_slot, {})
        key = (l2_slot, hour, len(self.plans.get(l1_slot, ())))
        if key not in cached:
            cached[key] = _Flex(tuple(self._member_flex(l2_slot, hour)))
        return cached[key]

    def _member_flex(self, l2_slot: int, hour: float | None) -> list[MemberFlex]:
        l1_slot, half = divmod(l2_slot, 2)
        if hour is not None:
            export, retail = self.tariff.export_price_at(hour), self.tariff.retail_at(hour)
        out = []
        for m, p in sorted(self.plans.get(l1_slot, {}).items()):
            up_ask = down_ask = p.price_per_kwh
            planned = p.planned_p_kw[half]
            if hour is not None:
                up_ask = max(p.price_per_kwh - export, 0.0)
                down_ask = max((export if planned > 0 else retail) - p.price_per_kwh, 0.0)
            out.append(MemberFlex(m, p.up_kw, p.down_kw, up_ask * EXPECTED_DEPLOYMENT, planned,
                                  down_ask * EXPECTED_DEPLOYMENT))
        return out

    def offers(self, l2_slot: int, hour: float) -> tuple[BiddingDecision, float]:
        """Offers for ``l2_slot`` from the persistent offer model: members' planned flexibility, each limited
        by what it can physically deliver now (meter-reported headroom, corrective caps), so the VPP never sells
        what it cannot give, their Layer I overflow and the community battery. Returns the decision and the
        baseline the VPP declares (members' planned injection + the battery's baseline)."""
        up, down = self.member_capability(l2_slot * 3)
        flex = [MemberFlex(f.member, up.get(f.member, 0.0), down.get(f.member, 0.0), f.price_per_kwh, f.planned_p_kw,
                           f.down_price_per_kwh) for f in self.member_flex(l2_slot, hour)]
        forecast = self.prices.get(l2_slot - 1) or self.prices.get(l2_slot - 2) or DEFAULT_PRICE_FORECAST
        if self.offer_model is None:
            self.offer_model = OfferModel(sorted(self.members))
        decision = self.offer_model.decide(BiddingInput(
            members=flex, price_forecast_per_mw_h=forecast, retail_per_kwh=self.tariff.retail_at(hour),
            export_per_kwh=self.tariff.export_price_at(hour), stored_value_per_kwh=self.stored_value_per_kwh(),
            min_offer_kw=self.config.min_offer_kw, delivery_risk=self.config.delivery_risk,
            penalty_multiplier=self.penalty_multiplier, **self._battery_input(l2_slot)))
        self.decisions[l2_slot] = decision
        baseline = sum(f.planned_p_kw for f in flex) + decision.battery_baseline_kw
        self.baseline_kw[l2_slot] = baseline
        return decision, baseline

    def stored_value_per_kwh(self) -> float:
        """``w``: a kWh in the community battery is worth the mean retail price of the day (refilling it)."""
        return sum(self.tariff.retail_at(h + 0.5) for h in range(24)) / 24

    def _battery_input(self, l2_slot: int) -> dict:
        """The battery's part of the offer model's input for ``l2_slot`` (it starts 900 s after the gate): the
        state of charge projected over the intervals of the current slot not yet dispatched."""
        if self.battery is None:
            return {}
        c = self.battery.config
        now = self.decisions.get(l2_slot - 1)
        up, down = self.battery_reserve.get(l2_slot - 1, (0.0, 0.0))
        low, high = self.battery.projected_soc(now.battery_baseline_kw if now else 0.0, up, down, 2 * 300 / 3600)
        return dict(battery_kwh=c.kwh, battery_p_kw=c.kw, battery_soc_kwh=low, battery_soc_high_kwh=high,
                    eta_charge=c.eta_charge, eta_discharge=c.eta_discharge)

    def take_awards(self, l2_slot: int, awarded_kw: dict[str, float], prices: dict[str, float]):
        """Record the awards and split each product's award over who backed its offer (members and battery),
        pro rata to their contributions; returns the members' (up, down) reserve commitments."""
        self.awards[l2_slot] = dict(awarded_kw)
        self.prices[l2_slot] = dict(prices)
        decision = self.decisions.get(l2_slot)
        contributions = decision.contributions_kw if decision else {}
        up: dict[str, float] = {}
        down: dict[str, float] = {}
        for p in PRODUCTS:
            award = awarded_kw.get(p, 0.0)
            if award <= 0 or not contributions.get(p):
                continue
            target = down if p == "reg_down" else up
            for k, kw in disaggregate(award, contributions[p]).items():
                target[k] = target.get(k, 0.0) + kw
        self.battery_reserve[l2_slot] = (up.pop(BATTERY, 0.0), down.pop(BATTERY, 0.0))
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
        flex = self._flex(interval // 3)
        up_cap, down_cap = self.capability(interval)
        if flex.spare_price_per_kwh is None:
            buyback = self.tariff.buyback_price_per_kwh
            costs = [(max(f.price_per_kwh / EXPECTED_DEPLOYMENT - buyback, 0.0), f.up_kw + f.down_kw)
                     for f in flex.flex]
            weight = sum(w for _, w in costs)
            flex.spare_price_per_kwh = sum(c * w for c, w in costs) / weight if weight > 0 else 0.0
        return layer3_needs(required, up_cap, down_cap, self.last_drift_kw, period_s=300,
                            penalty_price_per_kwh=penalty_price_per_mw_h / 1000.0 * self.penalty_multiplier,
                            spare_price_per_kwh=flex.spare_price_per_kwh + SPARE_MARGIN_PER_KWH)

    def member_capability(self, interval: int) -> tuple[dict[str, float], dict[str, float]]:
        """Up and down kW each member can deliver in ``interval``: what it offered for the slot, limited by
        the headroom its meter last reported (state of charge, battery power) and by what a corrective cap
        leaves room for (a member whose export is capped for over-voltage cannot deliver up); the community
        battery (key :data:`BATTERY`) can move from its baseline as far as its power and energy allow, but not
        up right after the guard capped an export for over-voltage (nor down after it capped an import)."""
        up, down = {}, {}
        if self.battery is not None and interval // 3 in self.decisions:
            up[BATTERY], down[BATTERY] = self.battery.headroom_kw(self.battery_baseline(interval))
            if self.voltage_state == "high":
                up[BATTERY] = 0.0
            elif self.voltage_state == "low":
                down[BATTERY] = 0.0
        names, offered_up, offered_down, members = self._flex(interval // 3).columns
        room_up, room_down, last_p = self.headroom_up_kw, self.headroom_down_kw, self.last_p_kw
        up.update({m: min(u, room_up.get(m, u)) for m, u in zip(names, offered_up, strict=True)})
        down.update({m: min(d, room_down.get(m, d)) for m, d in zip(names, offered_down, strict=True)})
        for m, cap in self.guard.export_cap_kw.items():
            if m in members:
                up[m] = min(up[m], max(cap - last_p.get(m, 0.0), 0.0))
        for m, cap in self.guard.import_cap_kw.items():
            if m in members:
                down[m] = min(down[m], max(cap + last_p.get(m, 0.0), 0.0))
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
        return self._setpoints(interval, asked_kw, *self.member_capability(interval))

    def dispatch_members(self, interval: int, required: float,
                         credit_kw: float) -> tuple[float, dict[str, SetpointMsg]]:
        """What the VPP asks of its members in ``interval`` (:meth:`member_target`; 0 when nothing is required
        nor credited) and their :meth:`setpoints`, from one look at what they can deliver."""
        up, down = self.member_capability(interval)
        asked = 0.0
        if required or credit_kw:
            asked = member_target_kw(required, credit_kw, self.last_drift_kw, sum(up.values()), sum(down.values()))
        return asked, self._setpoints(interval, asked, up, down)

    def _setpoints(self, interval: int, asked_kw: float, up: dict[str, float],
                   down: dict[str, float]) -> dict[str, SetpointMsg]:
        if asked_kw >= 0:
            share = disaggregate(asked_kw, up)
        else:
            share = {m: -kw for m, kw in disaggregate(-asked_kw, down).items()}
        self.battery_delta_kw[interval] = share.get(BATTERY, 0.0)
        export_caps, import_caps = self.guard.export_cap_kw, self.guard.import_cap_kw
        out = {}
        for m in self.members:
            delta = share.get(m, 0.0)
            if delta or m in export_caps or m in import_caps:
                out[m] = SetpointMsg(delta_p_kw=delta, max_export_kw=export_caps.get(m),
                                     max_import_kw=import_caps.get(m))
        return out

    def battery_baseline(self, interval: int) -> float:
        decision = self.decisions.get(interval // 3)
        return decision.battery_baseline_kw if decision else 0.0

    def dispatch_battery(self, interval: int) -> tuple[float, float, float, float]:
        """Commit the community battery for ``interval`` (after :meth:`setpoints`): (p_kw, baseline_kw,
        delivery_kw, corrective_kw), rule in :mod:`federates.vpp.community_battery`."""
        if self.battery is None:
            return 0.0, 0.0, 0.0, 0.0
        base, delta = self.battery_baseline(interval), self.battery_delta_kw.pop(interval, 0.0)
        corrective = 0.0
        if self.config.corrective and not any(v > 0 for v in self.awards.get(interval // 3, {}).values()):
            dis, ch = self.battery.limits_kw()
            if self.voltage_state == "high":
                corrective = -ch - (base + delta)
            elif self.voltage_state == "low":
                corrective = dis - (base + delta)
        p = self.battery.dispatch(interval, base + delta + corrective)
        return p, base, delta, corrective

    def activation_cost(self, interval: int, member: str, delta_kw: float, hour: float) -> float:
        """$ per kWh a member gives up when asked to deliver ``delta_kw`` (documented compensation rule).

        Up (more injection): it exports energy it values at its marginal value lambda (from its plan) and is
        paid the export credit for it: ``max(lambda - export credit, 0)``. Down (less injection): it stores
        energy worth lambda to it, bought at retail if it planned to import or forgone export credit if it
        planned to export: ``max(price - lambda, 0)``.
        """
        return self.activation_costs(interval, {member: delta_kw}, hour)[member]

    def activation_costs(self, interval: int, delta_kw: dict[str, float], hour: float) -> dict[str, float]:
        """:meth:`activation_cost` of each member of ``delta_kw`` (member -> kW asked)."""
        plans = self.plans.get(interval // 6, {})
        half = (interval // 3) % 2
        export_credit = self.tariff.export_price_at(hour)
        retail = None
        out = {}
        for member, delta in delta_kw.items():
            plan = plans.get(member)
            if plan is None:
                out[member] = 0.0
            elif delta >= 0:
                out[member] = max(plan.price_per_kwh - export_credit, 0.0)
            elif plan.planned_p_kw[half] > 0:
                out[member] = max(export_credit - plan.price_per_kwh, 0.0)
            else:
                retail = self.tariff.retail_at(hour) if retail is None else retail
                out[member] = max(retail - plan.price_per_kwh, 0.0)
        return out

    def observe(self, interval: int, v_pu: dict[str, float], p_kw: dict[str, float], members_p_kw: float,
                asked_kw: float) -> list[Action]:
        """After a power flow: update the drift forecast (metered deviation from the baseline that members
        were not asked for) and the corrective caps."""
        self.last_p_kw = dict(p_kw)
        baseline = self.baseline_kw.get(interval // 3)
        if baseline is not None:
            # the battery's actual power minus its baseline and asked delivery (clamping, corrective) is drift too
            self.last_drift_kw = members_p_kw - baseline - asked_kw
        actions = self.guard.update(v_pu, p_kw) if self.config.corrective else []
        kinds = {a.kind for a in actions}
        self.voltage_state = "high" if "cap_export" in kinds else "low" if "cap_import" in kinds else None
        return actions
