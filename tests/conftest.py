import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data folder beside the repository (../shared/data); required in CI."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"reference data missing at {SHARED_DATA}")
        pytest.skip(f"reference data not present at {SHARED_DATA}")
    return SHARED_DATA
