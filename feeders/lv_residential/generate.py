"""Seeded generator of radial residential low-voltage (LV) feeders as OpenDSS master files.

Run ``python feeders/lv_residential/generate.py`` to (re)write the committed outputs
``feeders/lv_suburb/Master.dss`` and ``feeders/lv_rural/Master.dss``. The output depends only on the
:class:`FeederSpec` and the seed, so re-running reproduces the committed files byte for byte.

Topology (radial, 50 Hz):

- an 11 kV source (held at ``source_pu`` by the upstream primary-substation OLTC) feeding an
  11 kV / 0.416 kV Dyn distribution transformer;
- ``n_backbones`` three-phase backbones (4-core cable or aerial bundled conductor) leaving the LV busbar,
  each a chain of ``backbone_nodes`` poles/joints ``segment_m`` metres apart;
- at each backbone node, with probability ``lateral_prob``, a three-phase lateral of ``lateral_nodes``
  nodes (smaller conductor);
- houses attached round-robin to the backbone and lateral nodes by single-phase service drops
  (``service_m`` metres of 35 mm2 Al concentric cable); phases are dealt a, b, c, a, ... over a seeded
  shuffle of the houses, so the three phases carry an equal number of houses (+-1).

Impedances are positive/zero-sequence values per km for typical UK/EU LV conductors (the neutral is
Kron-reduced, i.e. multiply earthed; R0 about 3-4 x R1 represents the neutral return path). Service drops
are single-phase lines whose impedance is the phase + neutral loop (2 x conductor). Every house is a
single-phase constant-power load at 0.24 kV with a base demand drawn uniformly from ``base_kw`` at
power factor 0.95; the base kW is the house's evening-peak demand, and a 24-point residential ``daily``
load shape is attached so the feeder also runs in OpenDSS daily mode. In co-simulation the feeder federate
sets the loads itself (snapshot mode), so the shape is informative only.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

FEEDERS_DIR = Path(__file__).resolve().parents[1]

# Per-unit residential demand by hour (UK domestic profile class 1, winter weekday, normalised to peak).
# fmt: off
RESIDENTIAL_DAILY = (
    0.35, 0.30, 0.28, 0.27, 0.27, 0.30, 0.45, 0.60, 0.55, 0.45, 0.42, 0.42,
    0.43, 0.42, 0.42, 0.45, 0.60, 0.85, 1.00, 0.95, 0.85, 0.70, 0.55, 0.42,
)
# fmt: on


@dataclass(frozen=True)
class LineCode:
    """A conductor type: sequence impedances in ohm/km and its normal ampacity."""

    name: str
    r1: float
    x1: float
    r0: float
    x0: float
    norm_amps: float
    description: str


# Typical values (manufacturers' data sheets for BS 7870 / HD 603 LV cables and BS 7870-5 ABC).
CABLE_185_AL = LineCode("cable_185al", 0.164, 0.074, 0.656, 0.290, 350, "4-core 185 mm2 Al XLPE cable")
CABLE_95_AL = LineCode("cable_95al", 0.320, 0.075, 1.280, 0.300, 230, "4-core 95 mm2 Al XLPE cable")
ABC_95_AL = LineCode("abc_95al", 0.320, 0.085, 1.280, 0.340, 235, "4x95 mm2 Al aerial bundled conductor")
ABC_70_AL = LineCode("abc_70al", 0.443, 0.090, 1.772, 0.360, 200, "4x70 mm2 Al aerial bundled conductor")
ABC_35_AL = LineCode("abc_35al", 0.868, 0.095, 3.472, 0.380, 130, "4x35 mm2 Al aerial bundled conductor")
# Service drop: phase + neutral loop of 35 mm2 Al concentric (split-concentric) cable.
SERVICE_R_LOOP_OHM_PER_KM = 2 * 0.868
SERVICE_X_LOOP_OHM_PER_KM = 0.092
SERVICE_NORM_AMPS = 100


@dataclass(frozen=True)
class FeederSpec:
    """Everything that shapes one generated feeder (lengths in metres, powers in kW/kVA)."""

    name: str
    n_houses: int
    n_backbones: int
    backbone_nodes: int
    segment_m: tuple[float, float]
    lateral_prob: float
    lateral_nodes: int
    lateral_segment_m: tuple[float, float]
    service_m: tuple[float, float]
    backbone_code: LineCode
    lateral_code: LineCode
    transformer_kva: float
    transformer_pct_x: float
    transformer_pct_r: float
    source_pu: float
    base_kw: tuple[float, float] = (1.0, 5.0)
    power_factor: float = 0.95
    description: str = ""


SUBURB = FeederSpec(
    name="lv_suburb",
    n_houses=60,
    n_backbones=3,
    backbone_nodes=8,
    segment_m=(25.0, 40.0),
    lateral_prob=0.5,
    lateral_nodes=3,
    lateral_segment_m=(20.0, 30.0),
    service_m=(10.0, 25.0),
    backbone_code=CABLE_185_AL,
    lateral_code=CABLE_95_AL,
    transformer_kva=500.0,
    transformer_pct_x=4.0,
    transformer_pct_r=1.0,
    source_pu=1.02,
    description="Suburban underground cable network, 60 houses, short strong feeders.",
)

RURAL = FeederSpec(
    name="lv_rural",
    n_houses=50,
    n_backbones=3,
    backbone_nodes=8,
    segment_m=(35.0, 50.0),
    lateral_prob=0.4,
    lateral_nodes=3,
    lateral_segment_m=(30.0, 45.0),
    service_m=(20.0, 40.0),
    backbone_code=ABC_95_AL,
    lateral_code=ABC_70_AL,
    transformer_kva=200.0,
    transformer_pct_x=4.0,
    transformer_pct_r=1.2,
    source_pu=1.03,
    description="Rural overhead (aerial bundled conductor) network, 50 houses, long weak feeders.",
)


def _linecode_dss(code: LineCode) -> str:
    return (
        f"New LineCode.{code.name} nphases=3 units=km r1={code.r1} x1={code.x1} r0={code.r0} "
        f"x0={code.x0} c1=0 c0=0 normamps={code.norm_amps} emergamps={code.norm_amps * 1.5:g}"
        f"   ! {code.description}"
    )


def _segments(spec: FeederSpec, rng: random.Random) -> tuple[list[str], list[str]]:
    """Backbone and lateral lines; returns (dss lines, names of the nodes houses may attach to)."""
    lines, nodes = [], []
    for f in range(1, spec.n_backbones + 1):
        upstream = "lv_busbar"
        for i in range(1, spec.backbone_nodes + 1):
            node = f"f{f}_n{i:02d}"
            length = rng.uniform(*spec.segment_m)
            lines.append(
                f"New Line.bb_{node} phases=3 bus1={upstream} bus2={node} "
                f"linecode={spec.backbone_code.name} length={length:.1f} units=m"
            )
            nodes.append(node)
            upstream = node
            if rng.random() < spec.lateral_prob:
                lines.extend(_lateral(spec, rng, node, nodes))
    return lines, nodes


def _lateral(spec: FeederSpec, rng: random.Random, root: str, nodes: list[str]) -> list[str]:
    lines, upstream = [], root
    for j in range(1, spec.lateral_nodes + 1):
        node = f"{root}_l{j}"
        length = rng.uniform(*spec.lateral_segment_m)
        lines.append(
            f"New Line.lat_{node} phases=3 bus1={upstream} bus2={node} "
            f"linecode={spec.lateral_code.name} length={length:.1f} units=m"
        )
        nodes.append(node)
        upstream = node
    return lines


def _houses(spec: FeederSpec, rng: random.Random, nodes: list[str]) -> list[str]:
    """Service drops and loads, phases balanced over a seeded shuffle of the houses."""
    order = list(range(spec.n_houses))
    rng.shuffle(order)
    phase_of = {house: 1 + k % 3 for k, house in enumerate(order)}
    tan_phi = math.tan(math.acos(spec.power_factor))
    out = []
    for h in range(spec.n_houses):
        node = nodes[h * len(nodes) // spec.n_houses]
        ph = phase_of[h]
        name = f"h{h + 1:03d}"
        kw = rng.uniform(*spec.base_kw)
        out.append(
            f"New Line.svc_{name} phases=1 bus1={node}.{ph} bus2={name}.{ph} linecode=service "
            f"length={rng.uniform(*spec.service_m):.1f} units=m"
        )
        out.append(
            f"New Load.house_{name} phases=1 bus1={name}.{ph} conn=wye model=1 kV=0.24 "
            f"kW={kw:.2f} kvar={kw * tan_phi:.3f} daily=residential"
        )
    return out


def generate_feeder(spec: FeederSpec, seed: int) -> str:
    """Return the OpenDSS master text of one feeder; deterministic in (spec, seed)."""
    rng = random.Random(seed)
    lines, nodes = _segments(spec, rng)
    houses = _houses(spec, rng, nodes)
    mult = " ".join(f"{m:.2f}" for m in RESIDENTIAL_DAILY)
    header = [
        f"! {spec.name}: generated by feeders/lv_residential/generate.py (seed={seed}); do not edit by hand.",
        f"! {spec.description}",
        "Clear",
        "Set DefaultBaseFrequency=50",
        f"New Circuit.{spec.name} basekv=11 pu={spec.source_pu} phases=3 bus1=sourcebus "
        "MVAsc3=150 MVAsc1=100",
        f"New Transformer.tx phases=3 windings=2 buses=[sourcebus lv_busbar] conns=[delta wye] "
        f"kvs=[11 0.416] kvas=[{spec.transformer_kva:g} {spec.transformer_kva:g}] "
        f"XHL={spec.transformer_pct_x} %R={spec.transformer_pct_r / 2:g}",
        _linecode_dss(spec.backbone_code),
        _linecode_dss(spec.lateral_code),
        f"New LineCode.service nphases=1 units=km rmatrix=({SERVICE_R_LOOP_OHM_PER_KM:.3f}) "
        f"xmatrix=({SERVICE_X_LOOP_OHM_PER_KM}) cmatrix=(0) normamps={SERVICE_NORM_AMPS}"
        "   ! 35 mm2 Al concentric service, phase+neutral loop",
        f"New LoadShape.residential npts=24 interval=1 mult=({mult})",
    ]
    footer = ["Set VoltageBases=[11, 0.416]", "CalcVoltageBases"]
    return "\n".join(header + lines + houses + footer) + "\n"


def write_feeder(spec: FeederSpec, seed: int, out_dir: Path = FEEDERS_DIR) -> Path:
    """Write ``<out_dir>/<spec.name>/Master.dss`` and return its path."""
    path = out_dir / spec.name / "Master.dss"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generate_feeder(spec, seed))
    return path


SEEDS = {SUBURB.name: 20240601, RURAL.name: 20240602}


def main() -> None:
    for spec in (SUBURB, RURAL):
        print(write_feeder(spec, SEEDS[spec.name]))


if __name__ == "__main__":
    main()
