import os
from pathlib import Path

import pyarrow  # noqa: F401 - loaded before any test imports helics (see below)
import pytest

# libhelics (HELICS's shared library, with its own static C++ runtime) loaded before libarrow makes pyarrow's time-zone
# code crash the process (segfault in pyarrow.lib.string_to_tzinfo, e.g. reading a Parquet table with a timezone-aware
# column). The e2e tests import the HELICS shell and read such tables; the federates themselves never use pyarrow's
# time zones.

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


@pytest.fixture(scope="session")
def shared_file(shared_data):
    """``shared_file("feeders/123Bus/IEEE123Master.dss")``: a file of the reference data; skip (fail in CI) when
    it is missing."""
    def path(relative: str) -> Path:
        found = shared_data / relative
        if not found.exists():
            reason = f"reference data {found} not found (expected the shared data folder next to the repo)"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        return found
    return path
