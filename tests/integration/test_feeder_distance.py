"""``FeederModel.load_distances_km``: each load's distance from the circuit's source along the lines.

Known answers from line lengths given by hand in mixed units, from the IEEE 13-node master's line lengths (in
ft), and, for the shared feeders, from OpenDSS's own ``Bus.Distance`` (DSS C-API 0.14.5, an EnergyMeter at the
head line; the IEEE European LV case has its own meter ``m1``), which agrees with ours up to the 0.001-unit
lengths OpenDSS gives switches (we count switches as 0 km).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from federates.feeder.model import FeederModel

REPO = Path(__file__).resolve().parents[2]
FT_KM = 0.3048e-3
MI_KM = 1.609344

HAND = """
Clear
New Circuit.hand basekv=11 pu=1.0 phases=3 bus1=src
New LineCode.per_mi nphases=3 units=mi r1=0.3 x1=0.6 r0=0.9 x0=1.8 c1=0 c0=0
New Line.a phases=3 bus1=src bus2=b1 linecode=per_mi length=1 units=km
New Line.b phases=3 bus1=b1 bus2=b2 linecode=per_mi length=500 units=m
New Line.c phases=3 bus1=b2 bus2=b3 linecode=per_mi length=1 units=mi
New Line.d phases=3 bus1=b3 bus2=b4 linecode=per_mi length=1000 units=ft
New Line.e phases=3 bus1=b4 bus2=b5 linecode=per_mi length=2 units=kft
! no units of its own: OpenDSS reads the length in the line code's units (mi), as it does the impedances
New Line.f phases=3 bus1=b5 bus2=b6 linecode=per_mi length=0.5
New Line.sw phases=3 bus1=b6 bus2=b7 switch=yes
New Transformer.t phases=3 windings=2 buses=[b7 lv] conns=[delta wye] kvs=[11 0.4] kvas=[500 500] XHL=4
New Line.g phases=1 bus1=lv.1 bus2=lv1.1 linecode=per_mi length=100 units=m
! a loop: m is 1 km from b1 and 100 m from b2, so 1.6 km from the source the short way (not 2.0)
New Line.m1 phases=3 bus1=b1 bus2=m linecode=per_mi length=1000 units=m
New Line.m2 phases=3 bus1=b2 bus2=m linecode=per_mi length=100 units=m
! shortcuts that carry nothing: a disabled line and a line open at its far end
New Line.off phases=3 bus1=src bus2=b5 linecode=per_mi length=10 units=m enabled=no
New Line.open phases=3 bus1=src bus2=b4 linecode=per_mi length=10 units=m
Open Line.open 2
! an island no closed path reaches
New Line.island phases=3 bus1=i1 bus2=i2 linecode=per_mi length=1 units=km
New Load.l_lv1 bus1=lv1.1 phases=1 kv=0.23 kw=3
New Load.l_b3 bus1=b3 phases=3 kv=11 kw=30
New Load.l_b6 bus1=b6 phases=3 kv=11 kw=30
New Load.l_m bus1=m phases=3 kv=11 kw=30
New Load.l_i2 bus1=i2 phases=3 kv=11 kw=30
Set voltagebases=[11 0.4]
Calcvoltagebases
"""


def distances(master: Path) -> dict[str, float]:
    model = FeederModel(master)
    try:
        return model.load_distances_km()
    finally:
        model.close()


def test_hand_sized_feeder_in_mixed_units(tmp_path):
    master = tmp_path / "Master.dss"
    master.write_text(HAND)
    got = distances(master)
    b3 = 1.0 + 0.5 + MI_KM
    b6 = b3 + 1000 * FT_KM + 2 * 0.3048 + 0.5 * MI_KM
    assert got["l_b3"] == pytest.approx(b3, abs=1e-9)
    assert got["l_b6"] == pytest.approx(b6, abs=1e-9), "a line without units is in its line code's units"
    assert got["l_lv1"] == pytest.approx(b6 + 0.1, abs=1e-9), "switch and transformer add nothing"
    assert got["l_m"] == pytest.approx(1.6, abs=1e-9), "the shortest way round the loop"
    assert math.isnan(got["l_i2"]), "no closed path: unknown, not 0"


def test_ieee13_distances_are_its_line_lengths():
    got = distances(REPO / "feeders" / "ieee13" / "Master.dss")
    # 650 is the source (the regulators are transformers); lengths in ft from the master file
    expected_ft = {"634a": 2000 + 500, "645": 2000 + 500, "646": 2000 + 500 + 300, "671": 2000 + 500 + 1500,
                   "692": 2000 + 500 + 1500, "675a": 2000 + 500 + 1500 + 500, "611": 2000 + 500 + 1500 + 300 + 300,
                   "652": 2000 + 500 + 1500 + 300 + 800, "dist670a": 2000 + 500}
    for load, ft in expected_ft.items():
        assert got[load] == pytest.approx(ft * FT_KM, abs=1e-9), load
    assert len(got) == 18


@pytest.mark.parametrize(("master", "loads", "farthest", "km", "opendss_km"), [
    ("123Bus/IEEE123Master.dss", 91, "s96b", 1.89738, 1.90038),  # 3 switches of 0.001 km on the way
    ("LVTestCase/Master.dss", 55, "load53", 0.293745436, 0.293745436),
    ("8500-Node/Master.dss", 1177, "2223661373a0", 17.043495029, 17.055495029),  # 12 switches
    ("8500-Node/Master-unbal.dss", 2354, "2223661373a0a", 17.043495029, 17.055495029),
])
def test_every_shared_feeder_has_a_distance_for_every_load(master, loads, farthest, km, opendss_km, shared_file):
    got = distances(shared_file(f"feeders/{master}"))
    assert len(got) == loads
    assert all(math.isfinite(v) and v >= 0 for v in got.values()), "every load is connected to the source"
    assert max(got, key=got.get) == farthest
    assert got[farthest] == pytest.approx(km, abs=1e-6)
    assert 0 <= opendss_km - got[farthest] <= 0.015, "OpenDSS's Bus.Distance differs only by its switch lengths"
