"""Shared pytest fixtures.

Shared test data lives in ``../shared`` beside the repo (or ``$MEDLAKE_SHARED_DIR``) and is
never copied into the repo. In a user's clone without it, tests that need it skip with the
reason; under ``CI=true`` its absence is an error, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("MEDLAKE_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_path(*parts: str) -> Path:
    """Return a path under the shared data dir, skipping (or failing under CI) if it is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        message = f"shared test data not found: {path} (set MEDLAKE_SHARED_DIR or clone beside ../shared)"
        if IN_CI:
            pytest.fail(message + " -- required under CI=true")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def neuralmed_dir() -> Path:
    """The real public sample: exam/ (100 files, 122 exams) and medical_report/ (101 files)."""
    return shared_path("data", "neuralmed")


@pytest.fixture(scope="session")
def shared_dicom_dir() -> Path:
    """7 real DICOMs: chest/ (4) and edge_cases/ (3)."""
    return shared_path("data", "dicom")


@pytest.fixture(scope="session")
def reference_sr_dir() -> Path:
    return shared_path("data", "reference_sr")
