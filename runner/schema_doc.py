"""Render the scenario schema as Markdown (``docs/scenario.md``); a test keeps the file in step.

Regenerate with ``python -m runner.schema_doc > docs/scenario.md``.
"""

from __future__ import annotations

import typing

from pydantic import BaseModel

from federates.common.config import Scenario


def _type_name(annotation) -> str:
    text = str(annotation).replace("typing.", "").replace("pathlib.", "").replace("datetime.", "")
    for mod in ("federates.common.config.", "federates.prosumer.devices."):
        text = text.replace(mod, "")
    return text.replace("<class '", "").replace("'>", "")


def _models(model: type[BaseModel], seen: dict[str, type[BaseModel]]) -> None:
    if model.__name__ in seen:
        return
    seen[model.__name__] = model
    for field in model.model_fields.values():
        for arg in _flatten(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)


def _flatten(annotation):
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    return [a for arg in args for a in _flatten(arg)]


def render() -> str:
    seen: dict[str, type[BaseModel]] = {}
    _models(Scenario, seen)
    out = ["# Scenario reference", "",
           "Generated from the schema (`python -m runner.schema_doc > docs/scenario.md`). Unknown keys are "
           "rejected. Paths are relative to the scenario file. Override any field with "
           "`--set dotted.path=value` (list items by index, e.g. `feeders.0.master=...`).", ""]
    for name, model in seen.items():
        summary = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
        out += [f"## {name}", "", summary, "",
                "| field | type | default | meaning |", "|---|---|---|---|"]
        for fname, field in model.model_fields.items():
            value = field.default_factory() if field.default_factory else field.default
            if field.is_required():
                default = "required"
            elif isinstance(value, BaseModel):
                default = f"see {type(value).__name__}"
            else:
                default = repr(value)
            if len(default) > 60:
                default = default[:57] + "..."
            desc = (field.description or "").replace("|", "/")
            out.append(f"| `{fname}` | `{_type_name(field.annotation)}` | `{default}` | {desc} |".replace("`` ", ""))
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render())
