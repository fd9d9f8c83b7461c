"""Shared test configuration.

- torch runs single-threaded (the CI machine has 2 shared cores; torch's default threads
  made tiny fits several times slower under contention);
- ``--runslow`` enables tests marked ``@pytest.mark.slow``;
- ``shared_data`` points at ``../shared/data/cryodrgn`` (real cryo-EM files), skipping with
  a reason where that folder is absent (a user's fresh clone).
"""

from pathlib import Path

import numpy as np
import pytest

try:  # torch is a hard dependency of the library, but keep collection robust
    import torch
except ImportError:  # pragma: no cover
    torch = None

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cryodrgn"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_configure(config):
    if torch is not None:
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _seeds_fixed():
    """Seed numpy's and torch's global generators so any test is reproducible alone."""
    np.random.seed(0)
    if torch is not None:
        torch.manual_seed(0)
    yield


@pytest.fixture
def global_random_seed():
    """A seed for tests that should hold for any seed (fixed to 0 here)."""
    return 0


@pytest.fixture(scope="session")
def shared_data():
    """Folder of real cryo-EM files from ../shared/data/cryodrgn (skips when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real cryo-EM fixtures not found at {SHARED_DATA} (only present beside a checkout with ../shared)")
    return SHARED_DATA
