"""Issue 9 item 7: a real Orthanc SIGKILLed in the middle of a real `medlake pacs run`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from medlake.devtools import synth
from medlake.lake import layout as lake
from medlake.pacs.loop import run as loop
from medlake.pacs.orthanc.server import OrthancServer, find_free_port

pytestmark = [pytest.mark.orthanc, pytest.mark.torch, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES = 8


def _write_inputs(directory: Path) -> list[str]:
    """IMAGES synthetic chest CRs in one study; returns their SOP Instance UIDs."""
    synth.write_chest_cr_series(directory, IMAGES, seed=33, name="outage", images_per_study=IMAGES)
    return [synth.uid_for(33, f"outage:{index}:sop") for index in range(IMAGES)]


def test_orthanc_killed_mid_run_stops_fast_records_sr_status_truthfully_and_a_rerun_resumes(
    orthanc_binary, tmp_path, monkeypatch
):
    uids = _write_inputs(tmp_path / "inputs")
    lake_dir, port, storage = tmp_path / "lake", find_free_port(), tmp_path / "orthanc"
    server = OrthancServer(port=port, storage=storage, binary=orthanc_binary).start()
    env = {
        **os.environ,
        "ORTHANC_URL": server.url,
        "ORTHANC_USERNAME": server.username,
        "ORTHANC_PASSWORD": server.password,
        "PYTHONPATH": str(REPO_ROOT / "scripts"),
    }
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "medlake", "pacs", "run", "--input", str(tmp_path / "inputs")]
            + ["--lake", str(lake_dir), "--allow-untrained-weights", "--weights-dir", str(tmp_path / "none")]
            + ["--batch-size", "1", "--land-batch", "1", "--sr-workers", "1", "--max-connection-failures", "3"]
            + ["--results-dir", str(tmp_path / "results"), "--no-progress"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        predictions_dir = lake_dir / "raw" / "predictions"
        deadline = time.monotonic() + 240
        while len(list(predictions_dir.rglob("part-*.parquet"))) < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no SR stored in 240 s"
            time.sleep(0.05)
        os.kill(server.running_pid(), signal.SIGKILL)  # the PACS dies mid-run
        killed_at = time.monotonic()
        stdout, stderr = process.communicate(timeout=120)
        stopped_after = time.monotonic() - killed_at
    finally:
        if process.poll() is None:
            process.kill()
        server.stop()
    # One clear message and a distinct exit code, not retries per SR (the old code: minutes).
    assert process.returncode == 3, stdout + stderr
    assert "consecutive connection failures" in stderr and "Re-run" in stderr
    assert stopped_after < 60, f"took {stopped_after:.0f}s to give up"
    first = lake.read_raw(lake_dir, "predictions").to_pylist()
    first_images = {p["sop_instance_uid"] for p in first}
    assert 0 < len(first_images) < IMAGES
    (run,) = lake.read_raw(lake_dir, "model_runs").to_pylist()
    assert run["run_status"] == "orthanc_unreachable" and "unreachable" in run["stop_reason"]

    restarted = OrthancServer(port=port, storage=storage, binary=orthanc_binary).start()
    try:
        with restarted.client() as client:
            # Each prediction's SR status is what Orthanc really holds.
            for row in first:
                in_orthanc = bool(client.find_instances(row["sr_sop_instance_uid"]))
                assert in_orthanc == (row["sr_status"] == "stored"), row
            not_stored = {p["sop_instance_uid"] for p in first if p["sr_status"] == "not_stored"}
        for key, value in (("URL", restarted.url), ("USERNAME", restarted.username), ("PASSWORD", restarted.password)):
            monkeypatch.setenv(f"ORTHANC_{key}", value)
        again = loop.run(
            tmp_path / "inputs",
            lake_dir,
            allow_untrained=True,
            weights_dir=tmp_path / "none",
            results_dir=tmp_path / "results",
            progress=False,
        )
        assert again.ok, again.render()
        counts = again.counts()
        assert counts["classified"] == IMAGES - len(first_images)  # what has predictions is not classified again
        assert counts["sr_from_lake"] == len(not_stored)  # their SRs built from the landed scores
        per_image = Counter(p["sop_instance_uid"] for p in lake.read_raw(lake_dir, "predictions").to_pylist())
        assert per_image == dict.fromkeys(uids, 18)  # no prediction twice
        with restarted.client() as client:
            assert client.instance_count() == 2 * IMAGES  # every image and exactly one SR each
        assert {row.sr_status for row in again.files if row.sr_status} <= {"Success", "AlreadyStored"}
    finally:
        restarted.stop()
