"""Declared result tables: every table's columns, written once.

Federates append rows to per-federate parts (``RUN/parts/<federate>/<table>.csv``); ``harmony collect`` (run
automatically by ``harmony run``) merges them into ``RUN/results/<table>.csv``. Units are in the column names
except where an issue fixed the name (``offer_price`` and ``clearing_price`` are $/MW-h, ``amount`` is $).
``time`` is seconds since the scenario start.
"""

from __future__ import annotations

TABLES: dict[str, tuple[str, ...]] = {
    # Layer I order books (side: buy | sell) and every trade of every layer (layer: 1, 2 or 3)
    # accepted: True when any of the order's energy was matched (matched_kwh says how much); reason: why the
    # gate rejected it (empty when it reached the market). Layer III books are recorded here too
    # (market vpp_market_up / vpp_market_down, slot = the 5-minute interval).
    "bids": ("time", "slot", "market", "participant", "side", "energy_kwh", "limit_price_per_kwh", "accepted",
             "matched_kwh", "reason"),
    "trades": ("time", "slot", "layer", "market", "buyer", "seller", "energy_kwh", "price_per_kwh"),
    # Layer II: one row per VPP, product and 15-minute slot (awards) or 5-minute interval (delivery)
    # required_kw: what the ISO's regulation signal / reserve deployment asked of the award in the interval
    # (delivery rows only); penalty_without_l3: what the ISO would have charged for the same metered delivery
    # without the VPP's Layer III credits (their difference is the penalty Layer III avoided in this run)
    "ancillary": ("time", "slot", "vpp", "product", "offered_kw", "offer_price", "awarded_kw", "clearing_price",
                  "required_kw", "delivered_kw", "performance", "penalty", "penalty_without_l3"),
    # loads_kw: power drawn by every load and DER element (prosumers count as negative loads when exporting);
    # tie_kw: power entering the feeder over the tie line to other feeders (Layer III in tie mode, else 0);
    # community_battery_kw: the VPP's community battery at its bus (+ = discharging; in loads_kw too, negated);
    # v_source_pu: the voltage of the feeder's source in the interval (the master's own value, or the one the
    # transmission power flow gave it, transmission.bus_of)
    "feeder_steps": ("time", "feeder", "converged", "v_min_pu", "v_max_pu", "p_head_kw", "q_head_kvar",
                     "losses_kw", "max_loading_pct", "n_violations", "members_p_kw", "loads_kw", "tie_kw",
                     "community_battery_kw", "message", "v_source_pu"),
    # the VPPs' community batteries, every 5-min interval (time = its start): p_kw (+ = discharging) =
    # baseline_kw + delivery_kw (its share of ancillary / Layer III delivery) + corrective_kw, clamped to its
    # limits; soc_kwh after the interval; its share of the slot's awards (reserve_up_kw, reserve_down_kw); kwh and
    # efficiencies to value its stored energy (runner/storage.py)
    "community_battery": ("time", "vpp", "feeder", "p_kw", "soc_kwh", "baseline_kw", "delivery_kw", "corrective_kw",
                          "reserve_up_kw", "reserve_down_kw", "kwh", "eta_charge", "eta_discharge"),
    "voltages": ("time", "feeder", "prosumer", "v_pu"),
    # T&D (scenario transmission): every bus of the transmission case, every 5-min interval (time = its start; the
    # solution the feeders applied in it): voltage magnitude and angle, load (the case's shaped load plus the
    # feeders'), of which the feeders' (copies x head power; feeder: who hangs there, "" none), MW / Mvar
    "transmission": ("time", "bus", "v_pu", "angle_deg", "p_load_mw", "q_load_mvar", "feeders_p_mw",
                     "feeders_q_mvar", "feeder"),
    # T&D, one row per interval: convergence, Newton iterations, the case's load multiplier, totals (MW, Mvar) with
    # p_gen_mw = p_load_mw + shunt_mw + losses_mw, and the range of bus voltages
    "transmission_steps": ("time", "case", "converged", "iterations", "load_multiplier", "p_gen_mw", "q_gen_mvar",
                           "p_load_mw", "feeders_p_mw", "shunt_mw", "losses_mw", "v_min_pu", "v_max_pu", "message"),
    # T&D, per attached feeder and interval: its transmission bus's voltage, its substation's tap step (OLTC;
    # 0 with fixed taps) and the source voltage it applied, v_source_pu = tap_pu x (1 + step x step_pu) x v_bus_pu
    "substations": ("time", "feeder", "bus", "v_bus_pu", "tap_step", "v_source_pu"),
    # topdown_grid_kw / topdown_soc_kwh: the same prosumer in the same interval under top-down (its top-down
    # twin in the market modes, itself in topdown, empty in netmetering): the reference of the VPP's guarantee
    "prosumer_steps": ("time", "prosumer", "feeder", "pv_kw", "load_kw", "flex_kw", "battery_kw", "soc_kwh",
                       "grid_kw", "curtailed_kw", "p2p_commit_kw", "reserve_up_kw", "reserve_down_kw",
                       "delta_p_kw", "unmet_flex_kwh", "topdown_grid_kw", "topdown_soc_kwh"),
    "corrective": ("time", "feeder", "prosumer", "kind", "value", "max_export_kw", "max_import_kw"),
    "ledger": ("time", "participant", "counterparty", "item", "energy_kwh", "amount"),
    # every value a federate published or read, for the timing tests and for debugging
    "exchange": ("time", "federate", "action", "key", "target"),
    # the JSON payload of every value published, recorded only when HARMONY_RECORD_PAYLOADS=1 (the lag-proof
    # timing test compares it with what each federate applied; off by default, it is large)
    "payloads": ("time", "federate", "key", "target", "payload"),
    # where prosumers sit: one row per prosumer (houses: how many houses its load stands for) and one per load
    # that was not placed (reason); bus: the load's bus, distance_km: that bus's distance from the feeder's source
    # along the lines (FeederModel.load_distances_km); written at build time
    "placement": ("feeder", "load", "prosumer", "houses", "bus", "distance_km", "reason"),
    # one row per federate at the end: where its wall time went, and the HEMS solves that fell back to grid-only
    "federate_stats": ("time", "federate", "kind", "steps", "wall_s", "helics_wait_s", "compute_s", "fallbacks"),
}
