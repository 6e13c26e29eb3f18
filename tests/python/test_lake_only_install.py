"""A lake-only install: a fresh venv with `pip install .` (no extras) lands, builds and queries the real sample.

The venv gets exactly requirements-lake.lock (pip's cache or the registry) and a non-editable
build of medlake from a copy of the checkout, so the dbt project must come from the package,
not from the repository. torch, the Orthanc clients and pydicom's pixel decoders must not be
importable, and a PACS command must say how to get them in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# What a wheel is built from; the rest of the checkout (data, target, .venv) stays behind.
SOURCE_PARTS = (
    "pyproject.toml",
    "setup.py",
    "README.md",
    "scripts",
    "dbt_project.yml",
    "profiles.yml",
    "models",
    "macros",
    "seeds",
    "analyses",
    "tests/dbt",
)
# Pillow is in the lake (the export re-encodes PNG/JPEG without metadata); DICOM pixel codecs are not.
NOT_IN_THE_LAKE = ("torch", "torchvision", "torchxrayvision", "highdicom", "pyorthanc", "httpx", "jpeg_ls")


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def lake_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake-only")
    source = root / "src"
    for part in SOURCE_PARTS:
        if (REPO / part).is_dir():
            shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (source / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / part, source / part)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], root, env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    run([*pip, "-r", str(REPO / "requirements-lake.lock")], root, env)
    run([*pip, "--no-build-isolation", str(source)], root, env)
    shutil.rmtree(source)  # the installed package must not lean on the copy it was built from
    return venv, env


def test_lake_only_venv_lands_builds_and_queries_the_real_sample_without_torch(lake_venv, neuralmed_dir, tmp_path):
    venv, env = lake_venv
    python, medlake = str(venv / "bin" / "python"), str(venv / "bin" / "medlake")
    for module in NOT_IN_THE_LAKE:
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, env=env)
        assert probe.returncode != 0, f"{module} is importable in the lake-only venv"
    lake = tmp_path / "lake"
    landed = json.loads(
        run(
            [medlake, "land", "--input", str(neuralmed_dir), "--lake", str(lake), "--format", "json"], tmp_path, env
        ).stdout
    )
    assert landed["rows_landed"]["exams"] == 122
    built = json.loads(run([medlake, "build", "--lake", str(lake), "--format", "json"], tmp_path, env).stdout)
    assert built["status_counts"].get("error", 0) == 0 and built["status_counts"].get("fail", 0) == 0
    answer = run([medlake, "query", "chest-many-labels", "--lake", str(lake), "--format", "json"], tmp_path, env)
    assert json.loads(answer.stdout)["count"] == 10  # as in test_queries, with the full install


def test_lake_only_venv_pacs_command_says_which_extra_to_install(lake_venv, tmp_path):
    venv, env = lake_venv
    done = subprocess.run(
        [str(venv / "bin" / "medlake"), "pacs", "run", "--input", str(tmp_path), "--lake", str(tmp_path / "lake")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 3
    assert done.stderr.strip().count("\n") == 0 and "pip install 'medlake[pacs]'" in done.stderr
    assert "Traceback" not in done.stderr
