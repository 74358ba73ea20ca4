from federates.vpp.corrective import CorrectiveController


def test_overvoltage_caps_exporters_and_tightens():
    g = CorrectiveController()
    acts = g.update({"a": 1.06, "b": 1.02, "c": 1.06}, {"a": 6.0, "b": 5.0, "c": -1.0})
    # a exports at high voltage -> capped at half its export; c imports (cannot help by exporting less)
    assert [(x.prosumer, x.kind) for x in acts] == [("a", "cap_export")]
    assert g.export_cap_kw == {"a": 3.0}
    g.update({"a": 1.051}, {"a": 3.0})
    assert g.export_cap_kw == {"a": 1.5}


def test_cap_relaxes_then_releases_once_voltage_is_back():
    g = CorrectiveController()
    g.update({"a": 1.06}, {"a": 4.0})
    acts = g.update({"a": 1.0}, {"a": 2.0})
    assert acts[0].kind == "relax" and g.export_cap_kw["a"] == 2.0 * 1.25 + 0.25
    kinds = [a.kind for _ in range(20) for a in g.update({"a": 1.0}, {"a": 1.0})]
    # ramps back up slowly (several steps), then is released once above any house's export
    assert kinds[:5] == ["relax"] * 5 and kinds[-1] == "release" and "a" not in g.export_cap_kw
    assert g.update({"a": 1.0}, {"a": 1.0}) == []


def test_undervoltage_caps_importers():
    g = CorrectiveController()
    g.update({"a": 0.94}, {"a": -8.0})
    assert g.import_cap_kw == {"a": 4.0}


def test_between_the_cap_and_release_bands_caps_hold():
    # limits 0.95 / 1.05: caps at > 1.04 (exporting) or < 0.96 (importing); relax only within [0.97, 1.03]
    g = CorrectiveController()
    g.update({"a": 1.045, "b": 0.955}, {"a": 4.0, "b": -4.0})
    assert g.export_cap_kw == {"a": 2.0} and g.import_cap_kw == {"b": 2.0}
    assert g.update({"a": 1.035, "b": 0.965}, {"a": 2.0, "b": -2.0}) == []         # neither tighten nor relax
    assert g.update({"a": 1.04, "b": 0.96}, {"a": 2.0, "b": -2.0}) == []
    acts = g.update({"a": 1.03, "b": 0.97}, {"a": 2.0, "b": -2.0})
    assert [(x.prosumer, x.kind) for x in acts] == [("a", "relax"), ("b", "relax")]
    assert acts[0] == ("a", "relax", 1.03, 2.75, None) and acts[1].max_import_kw == 2.75
