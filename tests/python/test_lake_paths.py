"""Lake paths reach SQL only through one quoting helper (issue 9 item 6), and nothing medlake writes is
readable by other users (issue 9 item 8). Real CLI processes on a lake whose path holds a quote,
spaces, non-ASCII letters and glob characters.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from medlake.devtools import synth
from medlake.lake import layout as lake_layout
from medlake.warehouse import dbt_runner

SCRIPTS_DIR = Path(dbt_runner.__file__).resolve().parents[2]
HOSTILE_NAME = "it's a lake {x} [1] ünïcødé"


def medlake(*arguments: str, umask: int = 0o022) -> subprocess.CompletedProcess:
    """The real CLI in its own process, started with a permissive umask as a user's shell would have."""
    env = dict(os.environ, PYTHONPATH=str(SCRIPTS_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MEDLAKE_UMASK", None)
    completed = subprocess.run(
        [sys.executable, "-m", "medlake", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(umask),
    )
    return completed


def delivery_files(hostile_lake) -> list[Path]:
    return [path for path in hostile_lake[2].rglob("*") if path.is_file()]


def exam_count(lake: Path) -> int:
    with duckdb.connect(str(lake_layout.warehouse_path(lake)), read_only=True) as connection:
        return connection.execute("select count(*) from marts.fct_exams").fetchone()[0]


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lake_paths_delivery") / "delivery"
    synth.generate(out, exams=300, seed=11, progress=False, workers=1)
    return out


@pytest.fixture(scope="module")
def hostile_lake(delivery, tmp_path_factory):
    """A lake under a hostile path, landed, built and queried by the real CLI (umask 022 outside)."""
    lake = tmp_path_factory.mktemp("lake_paths") / HOSTILE_NAME / "lake"
    steps = [
        ("land", "--input", str(delivery), "--lake", str(lake), "--no-progress"),
        ("build", "--lake", str(lake)),
        ("query", "chest-many-labels", "--lake", str(lake), "--min-labels", "1", "--format", "json"),
    ]
    outputs = []
    for step in steps:
        completed = medlake(*step)
        assert completed.returncode == 0, f"medlake {step[0]} failed: {completed.stderr[-2000:]}"
        outputs.append(completed.stdout)
    yield lake, outputs, delivery
    shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)


def test_land_build_query_work_on_a_lake_path_with_quotes_spaces_and_non_ascii(hostile_lake, delivery):
    lake, outputs, _ = hostile_lake
    answer = json.loads(outputs[2])
    assert answer["count"] > 0 and answer["sample"]
    summary = json.loads((delivery / synth.SUMMARY_FILE).read_text())
    assert exam_count(lake) == summary["distinct_exam_ids"] + summary["exams_without_id"]


def test_a_crafted_lake_path_cannot_make_the_marts_read_another_lake(delivery, tmp_path):
    """A lake named `*` sits beside another lake: its glob must not match its neighbour's raw files."""
    neighbour, crafted = tmp_path / "lakes" / "neighbour", tmp_path / "lakes" / "*"
    small = tmp_path / "small"
    synth.generate(small, exams=40, seed=12, progress=False, workers=1, dicom_exams=0)
    try:
        for source, lake in ((delivery, neighbour), (small, crafted)):
            completed = medlake("land", "--input", str(source), "--lake", str(lake), "--no-progress")
            assert completed.returncode == 0, completed.stderr[-2000:]
        completed = medlake("build", "--lake", str(crafted), "--no-docs")
        assert completed.returncode == 0, completed.stderr[-2000:]
        summary = json.loads((small / synth.SUMMARY_FILE).read_text())
        assert exam_count(crafted) == summary["distinct_exam_ids"] + summary["exams_without_id"]
    finally:
        shutil.rmtree(dbt_runner.target_path_for(crafted), ignore_errors=True)


def test_nothing_medlake_writes_is_readable_by_other_users(hostile_lake):
    """After land, build (with docs) and query under umask 022: no 'other' permission bit on anything medlake
    wrote (delivered originals hard-linked into the object store keep their own mode, behind private folders)."""
    lake, _, _ = hostile_lake
    delivered = {(info.st_dev, info.st_ino) for info in (p.stat() for p in delivery_files(hostile_lake))}
    roots = [lake, dbt_runner.target_path_for(lake)]
    exposed = []
    for root in roots:
        for path in [root, *root.rglob("*")]:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o007:
                continue
            if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) in delivered:
                # an original hard-linked into the object store keeps the delivery's own mode (a link
                # shares the inode); the lake's folders above it are private, so no other user reaches it
                continue
            exposed.append(f"{stat.filemode(info.st_mode)} {path}")
    assert not exposed, "\n".join(exposed[:20])
    assert lake_layout.warehouse_path(lake).is_file()
