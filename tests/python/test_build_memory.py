"""The build under a memory cap (issue 19 item 1), with real DuckDB, real dbt and real signals.

A 20 k-exam synthetic lake builds in a few seconds. Under a 90 MB DuckDB cap the marts need more
than the cap, so the build must spill into the lake's build folder and still produce exactly the
marts an uncapped build does; under a 10 MB cap it cannot, and says which setting to raise. A
dbt child killed by SIGKILL (what the kernel's out-of-memory killer sends) is reported as killed,
with the node it was running and the setting to lower, not as a build that never started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medlake.devtools import synth
from medlake.errors import DbtError
from medlake.lake import landing, pseudonyms
from medlake.lake import layout as lake_layout
from medlake.warehouse import dbt_runner, duckdb_memory
from test_build_safety import MARTS, mart_differences

EXAMS = 20_000
SPILLING_CAP = "90MB"  # the marts of 20 k exams need more; DuckDB spills to finish
IMPOSSIBLE_CAP = "10MB"
SCRIPTS_DIR = Path(dbt_runner.__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def landed_lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("build_memory")
    synth.generate(root / "delivery", exams=EXAMS, seed=7, dicom_exams=0, progress=False, workers=1)
    lake = root / "lake"
    landing.land(root / "delivery", lake, workers=1, progress=False)
    pseudonyms.pseudonym_key(lake)  # one key for every copy, so their pseudonyms agree
    yield lake
    shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)


@pytest.fixture
def lake_copy(landed_lake, tmp_path) -> Path:
    lake = tmp_path / "lake"
    shutil.copytree(landed_lake, lake)
    yield lake
    shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)


class SpillWatcher(threading.Thread):
    """Records the largest number of bytes DuckDB kept in the lake's spill folder during a build."""

    def __init__(self, lake: Path) -> None:
        super().__init__(daemon=True)
        self.spill = duckdb_memory.spill_directory(lake)
        self.peak_bytes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                used = sum(entry.stat().st_size for entry in self.spill.iterdir())
            except OSError:
                used = 0
            self.peak_bytes = max(self.peak_bytes, used)
            time.sleep(0.02)


def test_default_cap_is_half_the_machine_and_the_variable_overrides_it(monkeypatch):
    monkeypatch.delenv(duckdb_memory.MEMORY_LIMIT_VARIABLE, raising=False)
    half_mb = duckdb_memory.available_memory_bytes() // 2 // 2**20
    assert duckdb_memory.memory_limit() == f"{half_mb}MB"
    monkeypatch.setenv(duckdb_memory.MEMORY_LIMIT_VARIABLE, "3GB")
    assert duckdb_memory.memory_limit() == "3GB"
    environment = duckdb_memory.dbt_environment(Path("/lakes/a"))
    assert environment[duckdb_memory.TEMP_DIRECTORY_VARIABLE] == "/lakes/a/.building/spill"


def test_build_under_a_small_cap_spills_into_the_lake_and_builds_the_same_marts(lake_copy, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    shutil.copytree(lake_copy, reference)
    dbt_runner.build(reference, docs=False, quiet=True)

    monkeypatch.setenv(duckdb_memory.MEMORY_LIMIT_VARIABLE, SPILLING_CAP)
    watcher = SpillWatcher(lake_copy.resolve())
    watcher.start()
    try:
        summary = dbt_runner.build(lake_copy, docs=False, quiet=True)
    finally:
        watcher.stop.set()
        watcher.join()
    shutil.rmtree(dbt_runner.target_path_for(reference), ignore_errors=True)
    assert summary.status_counts.get("success", 0) > 0
    assert watcher.peak_bytes > 0, f"no spill file in {watcher.spill}: the cap did not bind"
    assert not duckdb_memory.spill_directory(lake_copy).exists(), "the spill folder outlived the build"
    differences = mart_differences(lake_layout.warehouse_path(lake_copy), lake_layout.warehouse_path(reference))
    assert differences == {mart: (0, 0) for mart in MARTS}


def test_a_cap_too_small_to_spill_under_names_the_setting(lake_copy, monkeypatch):
    monkeypatch.setenv(duckdb_memory.MEMORY_LIMIT_VARIABLE, IMPOSSIBLE_CAP)
    with pytest.raises(DbtError) as failure:
        dbt_runner.build(lake_copy, docs=False, quiet=True)
    message = str(failure.value)
    assert "failed on" in message and f"{duckdb_memory.MEMORY_LIMIT_VARIABLE}={IMPOSSIBLE_CAP}" in message
    assert not lake_layout.warehouse_path(lake_copy).exists(), "a failed first build must not publish a warehouse"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_build_whose_dbt_is_killed_says_it_was_killed_and_what_to_set(lake_copy):
    """SIGKILL of the dbt child mid-build (as the OOM killer does): the message names the signal and the cap."""
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS_DIR) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    build = subprocess.Popen(
        [sys.executable, "-m", "medlake", "build", "--lake", str(lake_copy), "--no-docs"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = dbt_runner.target_path_for(lake_copy.resolve()) / "logs" / "dbt.log"
    size_before = log.stat().st_size if log.exists() else 0
    try:
        deadline = time.monotonic() + 120
        dbt_child = None
        while time.monotonic() < deadline and build.poll() is None:
            children = _children(build.pid)
            if children and log.exists() and " START sql " in log.read_text(errors="replace")[size_before:]:
                dbt_child = children[0]
                break
            time.sleep(0.05)
        assert dbt_child is not None, f"dbt never started building a model: {build.poll()}"
        os.kill(dbt_child, signal.SIGKILL)
        _, stderr = build.communicate(timeout=60)
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
            build.wait()
    assert build.returncode != 0
    assert "dbt build was killed by SIGKILL while running " in stderr, stderr
    assert "out-of-memory" in stderr and duckdb_memory.MEMORY_LIMIT_VARIABLE in stderr
    assert "before running any node" not in stderr
    assert not lake_layout.warehouse_path(lake_copy).exists()
