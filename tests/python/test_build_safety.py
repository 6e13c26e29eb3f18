"""A killed ``medlake build`` and busy analysts (issue 9 items 2 and 4), against real processes.

Every test runs the real ``medlake build`` CLI in its own process on a small synthetic lake (a
build takes a few seconds, long enough to kill it or read beside it mid-flight), with real DuckDB
readers in other processes. The marts after a fault are compared row for row with a full refresh.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from lakehelpers import MARTS, mart_differences
from medlake.devtools import synth
from medlake.errors import LakeError
from medlake.lake import landing
from medlake.lake import layout as lake_layout
from medlake.warehouse import dbt_runner

BASE_EXAMS = 2_000
INCREMENT_EXAMS = 400
SEED = 7
SCRIPTS_DIR = Path(dbt_runner.__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SCRIPTS_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def medlake_process(*arguments: str, **popen) -> subprocess.Popen:
    """The real ``medlake`` CLI in its own process (and session, so a test can clean up after it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "medlake", *arguments],
        env=_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc), so the test can follow the dbt child after its parent dies."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    """True while any thread of ``pid`` lives (a zombie leader's other threads may still be exiting)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return True
        except OSError:
            continue
    return False


def lock_is_free(lake: Path) -> bool:
    try:
        with lake_layout.exclusive_lock(lake, busy_message="busy"):
            return True
    except LakeError:
        return False


def flock_is_held(lake: Path) -> bool:
    """Whether any process holds the lake's flock (a bare probe: unlike exclusive_lock it breaks nothing)."""
    with open(lake / "raw" / lake_layout.LOCK_FILE, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def lock_holders(lake: Path) -> list[str]:
    """Processes with the lake's lock file open (for a failure message)."""
    lock = str(lake / "raw" / lake_layout.LOCK_FILE)
    holders = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == lock for fd in fd_dir.iterdir()):
                holders.append((fd_dir.parent / "cmdline").read_text().replace("\0", " ")[:200])
        except OSError:
            continue
    return holders


def count_exams(warehouse: Path) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute("select count(*) from marts.fct_exams").fetchone()[0]


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("build_safety_deliveries")
    synth.generate(root / "base", exams=BASE_EXAMS, seed=SEED, progress=False, workers=1)
    synth.generate_increment(
        root / "increment", exams=INCREMENT_EXAMS, seed=SEED + 1, base_exams=BASE_EXAMS, base_seed=SEED, workers=1
    )
    return root / "base", root / "increment"


@pytest.fixture(scope="module")
def built_base_lake(deliveries, tmp_path_factory):
    lake = tmp_path_factory.mktemp("build_safety_base") / "lake"
    landing.land(deliveries[0], lake, workers=1, progress=False)
    dbt_runner.build(lake, docs=False, quiet=True)
    yield lake
    shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)


@pytest.fixture
def lake_copy(built_base_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(built_base_lake, lake)
    yield lake
    shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)


def wait_for_dbt_child(build: subprocess.Popen, lake: Path, timeout: float = 60.0, settle: float = 2.5) -> int:
    """The dbt child's pid, once dbt has started running nodes or has run ``settle`` seconds (so the kill
    lands mid-build: dbt may buffer its log, and an idle machine parses the project in about that time)."""
    log = dbt_runner.target_path_for(lake.resolve()) / "logs" / "dbt.log"
    log_size_before = log.stat().st_size if log.exists() else 0
    deadline = time.monotonic() + timeout
    child_seen_at = None
    while time.monotonic() < deadline:
        assert build.poll() is None, f"build ended before it could be killed: {build.communicate()}"
        children = children_of(build.pid)
        if children:
            child_seen_at = child_seen_at or time.monotonic()
            started = log.exists() and " START " in log.read_text(errors="replace")[log_size_before:]
            if started or time.monotonic() - child_seen_at > settle:
                return children[0]
        time.sleep(0.05)
    raise AssertionError("dbt never started")


def test_sigkill_of_build_parent_kills_dbt_and_keeps_the_lake_consistent(deliveries, lake_copy, tmp_path):
    """Issue 9 item 2: SIGKILL of `medlake build` takes dbt with it; the next land + build is exact."""
    lake = lake_copy
    landing.land(deliveries[1], lake, workers=1, progress=False)
    build = medlake_process("build", "--lake", str(lake), "--no-docs")
    dbt_child = None
    try:
        dbt_child = wait_for_dbt_child(build, lake)
        assert not lock_is_free(lake), "a running build must hold the lake lock"
        os.kill(build.pid, signal.SIGKILL)
        build.wait()
        deadline = time.monotonic() + 5
        while is_running(dbt_child) and time.monotonic() < deadline:
            # whatever is left of the build must still hold the lock while it runs
            assert flock_is_held(lake), "dbt is still running but the lake lock was released"
            time.sleep(0.05)
        assert not is_running(dbt_child), "the dbt child outlived its killed `medlake build` parent by 5 s"
    finally:
        if dbt_child is not None and is_running(dbt_child):
            os.kill(dbt_child, signal.SIGKILL)
    assert lock_is_free(lake), f"a killed build left the lake locked: {lock_holders(lake)}"

    # the lake is usable at once: a later delivery lands, the incremental build matches a full refresh
    later = tmp_path / "later"
    synth.generate_increment(
        later, exams=200, seed=SEED + 2, base_exams=BASE_EXAMS + INCREMENT_EXAMS, base_seed=SEED, workers=1
    )
    landing.land(later, lake, workers=1, progress=False)
    dbt_runner.build(lake, docs=False, quiet=True)
    reference = tmp_path / "reference"
    shutil.copytree(lake, reference)
    try:
        dbt_runner.build(reference, full_refresh=True, docs=False, quiet=True)
        differences = mart_differences(lake_layout.warehouse_path(lake), lake_layout.warehouse_path(reference))
    finally:
        shutil.rmtree(dbt_runner.target_path_for(reference), ignore_errors=True)
    assert differences == {mart: (0, 0) for mart in MARTS}


READER = """
import sys, time, duckdb
warehouse = sys.argv[1]
connection = duckdb.connect(warehouse, read_only=True)
print(connection.execute("select count(*) from marts.fct_exams").fetchone()[0], flush=True)
sys.stdin.readline()  # hold the connection open until the test says so
print(connection.execute("select count(*) from marts.fct_exams").fetchone()[0], flush=True)
"""

POLLER = """
import json, sys, time, duckdb
warehouse, stop_file = sys.argv[1], sys.argv[2]
seen, errors = [], []
import os
while not os.path.exists(stop_file):
    try:
        with duckdb.connect(warehouse, read_only=True) as connection:
            seen.append(connection.execute("select count(*) from marts.fct_exams").fetchone()[0])
    except Exception as exc:
        errors.append(str(exc).splitlines()[0])
    time.sleep(0.02)
print(json.dumps({"seen": sorted(set(seen)), "reads": len(seen), "errors": errors[:5], "error_count": len(errors)}))
"""


def test_open_read_only_connection_never_fails_a_build_and_keeps_its_snapshot(deliveries, lake_copy):
    """Issue 9 item 4: a notebook's read-only connection held open during a real build."""
    lake = lake_copy
    warehouse = lake_layout.warehouse_path(lake)
    before = count_exams(warehouse)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert int(reader.stdout.readline()) == before
        landing.land(deliveries[1], lake, workers=1, progress=False)
        build = medlake_process("build", "--lake", str(lake), "--no-docs")
        _, stderr = build.communicate(timeout=300)
        assert build.returncode == 0, f"the build failed beside an open reader: {stderr[-2000:]}"
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert int(reader.stdout.readline()) == before, "an open connection must keep the snapshot it opened"
    finally:
        reader.kill()
        reader.wait()
    after = count_exams(warehouse)
    assert after > before, "a new connection sees the new build"


def test_readers_during_a_build_see_old_or_new_marts_and_query_answers(deliveries, lake_copy, tmp_path):
    """Issue 9 item 4: readers polling through a real build see the old or the new count, never an error
    or a count between; `medlake query` run during the build answers from the last complete build."""
    lake = lake_copy
    warehouse = lake_layout.warehouse_path(lake)
    before = count_exams(warehouse)
    landing.land(deliveries[1], lake, workers=1, progress=False)
    stop_file = tmp_path / "stop"
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, str(warehouse), str(stop_file)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    build = medlake_process("build", "--lake", str(lake), "--no-docs")
    answers = []
    try:
        wait_for_dbt_child(build, lake)
        while build.poll() is None and len(answers) < 3:
            query = subprocess.run(
                [sys.executable, "-m", "medlake", "query", "covid-without-pneumonia", "--lake", str(lake)]
                + ["--month", "2021-06", "--format", "json"],
                env=_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert query.returncode == 0, f"`medlake query` failed during a build: {query.stderr[-1000:]}"
            answers.append(json.loads(query.stdout)["count"])
        _, stderr = build.communicate(timeout=300)
    finally:
        stop_file.touch()
        polled = json.loads(poller.communicate(timeout=60)[0])
        if build.poll() is None:
            build.kill()
    assert build.returncode == 0, f"the build failed beside readers: {stderr[-2000:]}"
    assert answers, "the build ended before a query could run during it"
    after = count_exams(warehouse)
    assert after > before
    assert polled["error_count"] == 0, polled["errors"]
    assert polled["reads"] > 0
    assert set(polled["seen"]) <= {before, after}, polled["seen"]
