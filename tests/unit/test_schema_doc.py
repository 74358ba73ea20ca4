from pathlib import Path

from runner.schema_doc import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenario.md"


def test_scenario_reference_is_up_to_date():
    assert DOC.read_text().strip() == render().strip(), "regenerate: python -m runner.schema_doc > docs/scenario.md"
