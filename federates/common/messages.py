"""Typed payloads exchanged over HELICS, and the project's one sign convention.

SIGN CONVENTION. Every net power is positive when it is injected into the distribution network by the named
element: a prosumer's ``p_kw``/``grid_kw`` > 0 is export and < 0 import; ``battery_kw`` > 0 is discharge;
``pv_kw``, ``load_kw`` and ``flex_kw`` are non-negative magnitudes; the feeder head ``p_head_kw`` > 0 means the
substation supplies the feeder. Market energies (``energy_kwh``) are non-negative with an explicit side, except
``net_kwh`` positions, which are positive when the participant bought (received) energy.

UNITS. Powers in kW, energies in kWh, voltages in per unit, Layer I/III prices in $/kWh, ancillary capacity
prices in $/MW-h (as ISOs publish them), times in seconds since the scenario start.

Each payload travels as a JSON string on a HELICS value publication of type ``string``. ``docs/helics_keys.md``
lists every key, its publisher, its subscribers and its payload; ``docs/schemas/`` holds each payload's JSON
Schema (``python -m runner.schemas`` writes them from these classes; a test keeps them in step).

VERSIONING. Every payload carries ``schema_version`` (:data:`SCHEMA_VERSION`, default, so senders may omit it).
It is raised when a field is removed or renamed or its meaning or unit changes; adding an optional field keeps
it. A payload of another version is refused on reading, naming both versions.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1  # of every payload below; see VERSIONING above


class Item(BaseModel):
    """Base of every part of a payload (an order, a plan, a trade): strict fields, JSON on the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def dumps(self) -> str:
        return self.model_dump_json()

    @classmethod
    def loads(cls, text: str):
        return cls.model_validate_json(text)


class Payload(Item):
    """Base of every wire payload (one per HELICS key): an :class:`Item` that carries the schema version."""

    schema_version: Literal[1] = SCHEMA_VERSION


# ---- prosumers -> feeder, VPP -------------------------------------------------------------------------------
class Injections(Payload):
    """Net injection of each prosumer for interval ``interval`` (+ = export), kW, and the meter's reading of
    the flexibility left for the next interval (``up_kw``: more injection, ``down_kw``: less; battery headroom
    at the current state of charge). Key ``<prosumer fed>/injections``."""

    time_s: float
    interval: int
    p_kw: dict[str, float]
    up_kw: dict[str, float] = {}
    down_kw: dict[str, float] = {}


class OrderMsg(Item):
    order_id: str
    participant: str
    side: str
    energy_kwh: float
    limit_price_per_kwh: float


class OrderBook(Payload):
    """Layer I orders for ``slot`` from one prosumer federate. Key ``<prosumer fed>/orders``."""

    time_s: float
    slot: int
    sender: str
    orders: list[OrderMsg]


class MemberPlan(Item):
    """A prosumer's plan for one Layer I slot and the flexibility it offers its VPP."""

    member: str
    slot: int
    planned_p_kw: tuple[float, float]  # planned net injection for the two 15-minute halves
    up_kw: float
    down_kw: float
    price_per_kwh: float


class Plans(Payload):
    """Plans after Layer I commitments. Key ``<prosumer fed>/plans``."""

    time_s: float
    slot: int
    plans: list[MemberPlan]


# ---- feeder -> VPP, ISO ----------------------------------------------------------------------------------------
class ViolationMsg(Item):
    kind: str  # "overvoltage" | "undervoltage" | "overload"
    element: str
    value: float
    limit: float
    prosumer: str | None = None


class FeederStateMsg(Payload):
    """Power-flow result for interval ``interval``. Key ``feeder_<name>/state``.

    Every number is finite (NaN and infinity are refused, so JSON never carries null). When the power flow of
    the interval failed (``converged`` False, ``message`` says why), the power-flow figures are those of the
    last converged step (before any: no voltages, ``v_min_pu`` = ``v_max_pu`` = 1 and zero powers, as
    placeholders), ``violations`` is empty and ``members_p_kw`` is still this interval's meter reading; a
    consumer must not act on the voltages of such a state."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    time_s: float
    interval: int
    feeder: str
    converged: bool
    v_pu: dict[str, float]  # per prosumer, worst-phase service voltage
    v_min_pu: float
    v_max_pu: float
    p_head_kw: float
    q_head_kvar: float
    losses_kw: float
    max_loading_pct: float
    members_p_kw: float  # metered net injection of all prosumers on the feeder
    community_battery_kw: float = 0.0  # metered injection of the VPP's community battery (+ = discharging)
    violations: list[ViolationMsg]
    message: str = ""  # why the power flow failed, or notes on a converged one


# ---- VPP <-> prosumers -----------------------------------------------------------------------------------------
class Positions(Payload):
    """Cleared Layer I positions for ``slot``: net kWh per prosumer (+ = bought) and the clearing price. Key
    ``vpp_<feeder>/positions/<prosumer fed>``: the positions of that federate's members only."""

    time_s: float
    slot: int
    net_kwh: dict[str, float]
    clearing_price_per_kwh: float | None = None


class ReserveCommitments(Payload):
    """Members' share of the VPP's ancillary awards for Layer II ``slot``. Key
    ``vpp_<feeder>/reserve/<prosumer fed>``: the shares of that federate's members only."""

    time_s: float
    slot: int
    up_kw: dict[str, float]
    down_kw: dict[str, float]


class SetpointMsg(Item):
    delta_p_kw: float = 0.0
    max_export_kw: float | None = None
    max_import_kw: float | None = None


class Setpoints(Payload):
    """Setpoints for interval ``interval`` (ancillary delivery + corrective caps) and the power of the VPP's
    community battery in that interval (+ = discharging; the feeder applies it at the battery's bus). Key
    ``vpp_<feeder>/setpoints/<prosumer fed>``: the setpoints of that federate's members only; key
    ``vpp_<feeder>/setpoints`` (only with a community battery): the feeder's, with no member setpoints."""

    time_s: float
    interval: int
    setpoints: dict[str, SetpointMsg]
    community_battery_kw: float = 0.0


# ---- VPP <-> ISO -----------------------------------------------------------------------------------------------
class AncillaryOffer(Payload):
    """A VPP's offers for Layer II ``slot``. Key ``vpp_<feeder>/offers``."""

    time_s: float
    slot: int
    vpp: str
    offered_kw: dict[str, float]
    offer_price_per_mw_h: dict[str, float]
    baseline_p_kw: float  # the members' planned net injection for the slot; delivery is measured against it


class Awards(Payload):
    """ISO clearing of Layer II ``slot``. Key ``iso/awards``."""

    time_s: float
    slot: int
    clearing_price_per_mw_h: dict[str, float]
    awarded_kw: dict[str, dict[str, float]]  # vpp -> product -> kW


class DispatchSignal(Payload):
    """ISO dispatch for interval ``interval``: regulation in [-1, 1] (+ = up) and spinning-reserve deployment
    fraction in [0, 1]. Key ``iso/dispatch``."""

    time_s: float
    interval: int
    regulation: float
    spin_deployed: float


# ---- VPPs <-> inter-VPP market ---------------------------------------------------------------------------------
class L3Order(Payload):
    """A VPP's Layer III orders for interval ``interval``, one book per direction: ``up`` trades more
    injection (a buyer is short of up-delivery), ``down`` trades less injection. Key ``vpp_<feeder>/l3_orders``."""

    time_s: float
    interval: int
    vpp: str
    up: list[OrderMsg]
    down: list[OrderMsg]


class TradeMsg(Item):
    buyer: str
    seller: str
    energy_kwh: float
    price_per_kwh: float
    fee_per_kwh: float = 0.0
    direction: str = ""


class L3Result(Payload):
    """Cleared Layer III interval. Key ``vpp_market/results``."""

    time_s: float
    interval: int
    trades: list[TradeMsg]
    credit_kwh: dict[str, float]  # per VPP: injection credited to its delivery (+ = others injected for it)


# ---- transmission -> feeders -----------------------------------------------------------------------------------
class TransmissionVoltages(Payload):
    """The transmission power flow solved for interval ``interval`` (published at the MEASURE phase of the interval
    before, from the feeders' head power of that interval). Per attached feeder: ``v_source_pu``, the voltage its
    source must take in ``interval`` (pu of its base: its substation's tap, moved by its OLTC if it has one, x
    ``bus_v_pu``), the transmission
    bus voltage ``bus_v_pu`` and angle ``bus_angle_deg``. When the power flow failed (``converged`` False, ``message``
    says why) the voltages are those of the last converged solution. Key ``transmission/voltages``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    time_s: float
    interval: int
    case: str
    converged: bool
    v_source_pu: dict[str, float]
    bus_v_pu: dict[str, float]
    bus_angle_deg: dict[str, float]
    losses_mw: float = 0.0
    message: str = ""
