"""JSON Schemas of the wire payloads (``docs/schemas/``), written from ``federates/common/messages.py``.

One file per payload (``<Payload>.json``, JSON Schema draft 2020-12, nested parts under ``$defs``) and
``index.json``: the schema version and which payload travels on which topic (the part of a HELICS key after
``/``, see ``docs/helics_keys.md``). An outside simulator validates what it sends and receives against these
files; ``tests/unit/test_schemas.py`` regenerates them and fails when they differ from the committed ones.

Regenerate with ``python -m runner.schemas`` (``--check`` only compares, exit status 1 if a file differs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from federates.common import messages as m

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# topic (the key after "<publishing federate>/") -> the payload it carries
TOPIC_PAYLOAD: dict[str, type[m.Payload]] = {
    "injections": m.Injections,
    "orders": m.OrderBook,
    "plans": m.Plans,
    "state": m.FeederStateMsg,
    "positions": m.Positions,
    "offers": m.AncillaryOffer,
    "reserve": m.ReserveCommitments,
    "l3_orders": m.L3Order,
    "setpoints": m.Setpoints,
    "awards": m.Awards,
    "dispatch": m.DispatchSignal,
    "results": m.L3Result,
    "voltages": m.TransmissionVoltages,
}


def payload_of(key: str) -> type[m.Payload]:
    """The payload class carried on HELICS key ``<federate>/<topic>`` or ``<federate>/<topic>/<addressee>``."""
    topic = key.split("/")[1] if "/" in key else key
    try:
        return TOPIC_PAYLOAD[topic]
    except KeyError:
        raise KeyError(f"key {key!r}: unknown topic {topic!r}; known: {sorted(TOPIC_PAYLOAD)}") from None


def schema(cls: type[m.Payload]) -> dict:
    """The JSON Schema of one payload, as published in ``docs/schemas/<name>.json``."""
    body = cls.model_json_schema(mode="validation")
    return {"$schema": DIALECT, "$id": f"{cls.__name__}.json", **body}


def render() -> dict[str, str]:
    """File name -> text of every file in ``docs/schemas/``."""
    files = {f"{cls.__name__}.json": _dump(schema(cls)) for cls in TOPIC_PAYLOAD.values()}
    index = {"schema_version": m.SCHEMA_VERSION,
             "topics": {topic: f"{cls.__name__}.json" for topic, cls in TOPIC_PAYLOAD.items()}}
    files["index.json"] = _dump(index)
    return files


def _dump(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def stale(folder: Path = SCHEMA_DIR) -> list[str]:
    """Files of ``folder`` that are missing, differ from :func:`render`, or are left over."""
    want = render()
    have = {p.name for p in folder.glob("*.json")} if folder.is_dir() else set()
    out = [name for name, text in want.items() if not (folder / name).is_file() or (folder / name).read_text() != text]
    return sorted(out + [name for name in have - set(want)])


def write(folder: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema into ``folder`` and delete schema files no payload has any more."""
    folder.mkdir(parents=True, exist_ok=True)
    want = render()
    for old in folder.glob("*.json"):
        if old.name not in want:
            old.unlink()
    paths = []
    for name, text in want.items():
        path = folder / name
        path.write_text(text)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write (or --check) the payload JSON Schemas in docs/schemas/")
    parser.add_argument("folder", nargs="?", type=Path, default=SCHEMA_DIR)
    parser.add_argument("--check", action="store_true", help="only compare; exit status 1 if a file differs")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.folder)
        for name in bad:
            print(f"{args.folder / name}: out of date; run python -m runner.schemas", file=sys.stderr)
        return 1 if bad else 0
    for path in write(args.folder):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
