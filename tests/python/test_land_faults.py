"""A killed ``medlake land`` (issue 9 item 3): real processes, real SIGKILL, real lock.

The parent of a parallel landing is SIGKILLed mid-flight: its forked workers must exit (they
inherited the lake lock), and the re-run must land the delivery with exact counts. A lock
kept by a leftover child of a dead holder is detected and broken with a message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from medlake.devtools import synth
from medlake.lake import landing
from medlake.lake.layout import read_raw

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def medlake_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "medlake", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "scripts"), env.get("PYTHONPATH")]))
    return env


def wait_for(predicate, seconds: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def big_delivery(tmp_path_factory):
    """Big enough that a 2-worker landing is still running a second after it starts."""
    out = tmp_path_factory.mktemp("faults") / "delivery"
    summary = synth.generate(out, exams=60_000, seed=9, dicom_exams=0, progress=False)
    return out, summary


def test_sigkill_of_land_kills_its_workers_and_the_rerun_lands_exact_counts(big_delivery, tmp_path):
    delivery, truth = big_delivery
    lake = tmp_path / "lake"
    parent = subprocess.Popen(
        medlake_command("land", "--input", str(delivery), "--lake", str(lake), "--workers", "2", "--no-progress"),
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    workers: list[psutil.Process] = []
    try:
        assert wait_for(lambda: len(psutil.Process(parent.pid).children()) >= 2, 60), "no workers started"
        workers = psutil.Process(parent.pid).children()
        time.sleep(0.5)  # mid-flight: workers are parsing
        assert parent.poll() is None, "the landing finished before it could be killed: make the delivery bigger"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_for(lambda: all(gone(w.pid) for w in workers), 10), "workers outlived their killed parent"
    finally:
        for process in [*workers]:
            if not gone(process.pid):
                process.kill()
    rerun = subprocess.run(
        medlake_command("land", "--input", str(delivery), "--lake", str(lake), "--no-progress", "--format", "json"),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    exams = read_raw(lake, "exams")
    assert exams.num_rows == truth.exam_records
    keys = set(zip(exams["source_file"].to_pylist(), exams["record_position"].to_pylist(), strict=True))
    assert len(keys) == exams.num_rows  # no duplicates
    assert read_raw(lake, "exam_labels").num_rows == truth.label_objects
    assert read_raw(lake, "medical_reports").num_rows == truth.report_records
    assert read_raw(lake, "quarantine").num_rows == truth.quarantine_rows_expected
    again = landing.land(delivery, lake, delivery_date=None, workers=1, progress=False)
    assert again.files_landed == {}


ORPHAN_HOLDER = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from medlake.lake.layout import exclusive_lock, init_lake

    lake = Path(sys.argv[1])
    init_lake(lake)
    with exclusive_lock(lake, busy_message="busy"):
        child = os.fork()
        if child == 0:  # a leftover child: inherits the locked file, never exits on its own
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)  # let the test read the parent's output to its end
            os.dup2(devnull, 2)
            time.sleep(600)
            os._exit(0)
        print(child, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # the holder dies without cleanup
    """
)


def test_a_lock_kept_by_a_dead_holders_child_is_broken_with_a_message(neuralmed_dir, tmp_path):
    lake = tmp_path / "lake"
    holder = subprocess.run(
        [sys.executable, "-c", ORPHAN_HOLDER, str(lake)], env=child_env(), capture_output=True, text=True, timeout=60
    )
    orphan = int(holder.stdout.split()[0])
    try:
        assert not gone(orphan)
        land = subprocess.run(
            medlake_command("land", "--input", str(neuralmed_dir), "--lake", str(lake), "--no-progress"),
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert land.returncode == 0, land.stderr
        assert "broke a stale lake lock" in land.stderr
        assert wait_for(lambda: gone(orphan), 10)
        assert read_raw(lake, "exams").num_rows == 122
    finally:
        if not gone(orphan):
            os.kill(orphan, signal.SIGKILL)
