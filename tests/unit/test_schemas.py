"""The payload JSON Schemas in docs/schemas/ are those of federates/common/messages.py, and every payload is
versioned."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydantic
import pytest

from federates.common import messages as m
from runner import schemas

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_schemas_are_those_of_the_messages():
    bad = schemas.stale()
    assert not bad, f"docs/schemas/ out of date ({bad}); run: python -m runner.schemas"


def test_stale_detects_a_changed_missing_and_left_over_file(tmp_path):
    schemas.write(tmp_path)
    assert schemas.stale(tmp_path) == []
    (tmp_path / "Injections.json").write_text("{}\n")
    (tmp_path / "Awards.json").unlink()
    (tmp_path / "Gone.json").write_text("{}\n")
    assert schemas.stale(tmp_path) == ["Awards.json", "Gone.json", "Injections.json"]
    assert schemas.main(["--check", str(tmp_path)]) == 1


def test_every_payload_travels_on_exactly_one_topic():
    payloads = {cls for cls in vars(m).values()
                if isinstance(cls, type) and issubclass(cls, m.Payload) and cls is not m.Payload}
    assert payloads == set(schemas.TOPIC_PAYLOAD.values())
    assert len(schemas.TOPIC_PAYLOAD) == len(payloads)


def test_helics_keys_doc_names_the_payload_of_each_topic():
    # keys <federate>/<topic>, or <federate>/<topic>/<addressee> (what a VPP sends each prosumer federate)
    rows = re.findall(r"^\| `[^`/]*/(\w+)(?:/[^`]*)?` \| `(\w+)`", (DOCS / "helics_keys.md").read_text(),
                      re.MULTILINE)
    assert sorted({topic for topic, _ in rows}) == sorted(schemas.TOPIC_PAYLOAD)
    assert all(schemas.TOPIC_PAYLOAD[topic].__name__ == name for topic, name in rows), rows


@pytest.mark.parametrize("topic", sorted(schemas.TOPIC_PAYLOAD))
def test_schema_lists_the_fields_and_requires_those_without_default(topic):
    cls = schemas.TOPIC_PAYLOAD[topic]
    doc = json.loads((DOCS / "schemas" / f"{cls.__name__}.json").read_text())
    assert doc["$schema"] == schemas.DIALECT and doc["additionalProperties"] is False
    assert set(doc["properties"]) == set(cls.model_fields)
    assert set(doc.get("required", [])) == {n for n, f in cls.model_fields.items() if f.is_required()}
    assert doc["properties"]["schema_version"] == {"const": m.SCHEMA_VERSION, "default": m.SCHEMA_VERSION,
                                                   "title": "Schema Version", "type": "integer"}


def test_every_payload_carries_its_version_and_parts_do_not():
    msg = m.L3Result(time_s=311.0, interval=1, trades=[m.TradeMsg(buyer="a", seller="b", energy_kwh=1.0,
                                                                   price_per_kwh=0.1)], credit_kwh={})
    wire = json.loads(msg.dumps())
    assert wire["schema_version"] == m.SCHEMA_VERSION == 1
    assert "schema_version" not in wire["trades"][0]


def test_a_sender_may_omit_the_version_but_not_send_another():
    text = '{"time_s": 309, "interval": 1, "regulation": 0.5, "spin_deployed": 0}'
    assert m.DispatchSignal.loads(text).schema_version == m.SCHEMA_VERSION
    with pytest.raises(pydantic.ValidationError, match="schema_version"):
        m.DispatchSignal.loads(text.replace("{", '{"schema_version": 2, '))


def test_payload_of_a_key():
    assert schemas.payload_of("feeder_suburb/state") is m.FeederStateMsg
    assert schemas.payload_of("prosumers_rural_1/injections") is m.Injections
    with pytest.raises(KeyError, match="unknown topic 'voltage'"):
        schemas.payload_of("feeder_suburb/voltage")
