"""``medlake pacs watch`` against a real Orthanc: a mixed study, re-runs, and a SIGKILL mid-backlog."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from medlake import cli
from medlake.devtools import synth
from medlake.lake import layout as lake
from medlake.pacs.loop import watch as pacs_watch
from medlake.pacs.orthanc.server import OrthancServer, find_free_port
from pacs_study import mixed_study, push_over_dicom, series_count, upload, wait_until_stable

pytestmark = [pytest.mark.orthanc, pytest.mark.torch, pytest.mark.shared, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _server(orthanc_binary: str, storage: Path) -> OrthancServer:
    return OrthancServer(port=find_free_port(), storage=storage, binary=orthanc_binary, stable_age_s=1)


def _env(server: OrthancServer) -> dict[str, str]:
    return {"ORTHANC_URL": server.url, "ORTHANC_USERNAME": server.username, "ORTHANC_PASSWORD": server.password}


def _watch_once(lake_dir: Path, tmp_path: Path, capsys, *extra: str) -> dict:
    code = cli.main(
        ["pacs", "watch", "--once", "--lake", str(lake_dir), "--allow-untrained-weights"]
        + ["--weights-dir", str(tmp_path / "no-weights"), "--results-dir", str(tmp_path / "results")]
        + ["--no-progress", "--format", "json", *extra]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def _our_srs(client) -> list[dict]:
    return [
        tags
        for tags in (client.simplified_tags(i) for i in client.list_instances())
        if tags.get("Modality") == "SR" and tags.get("Manufacturer") == "medlake"
    ]


def test_mixed_study_yields_one_sr_and_every_skip_in_the_lake(
    orthanc_binary, shared_dicom_dir, reference_sr_dir, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("pynetdicom", reason="pynetdicom (dev extra) pushes the study over DICOM")
    study = mixed_study(shared_dicom_dir, reference_sr_dir, tmp_path / "study")
    server = OrthancServer(
        port=find_free_port(),
        storage=tmp_path / "orthanc",
        binary=orthanc_binary,
        stable_age_s=1,
        dicom_port=find_free_port(),
    )
    with server:
        for key, value in _env(server).items():
            monkeypatch.setenv(key, value)
        client = server.client()
        push_over_dicom(server, [i.path for i in study])  # as a modality sends it: C-STORE on loopback
        wait_until_stable(client, series_count(study))
        lake_dir = tmp_path / "lake"

        first = _watch_once(lake_dir, tmp_path, capsys)
        assert first["ok"] and first["status"] == "finished"
        pa = next(i for i in study if i.expected_reason is None)
        # Exactly one SR, for the PA chest, in the study.
        srs = _our_srs(client)
        assert len(srs) == 1
        sr = srs[0]
        assert sr["StudyInstanceUID"] == pydicom_study(pa.path)
        assert (
            sr["CurrentRequestedProcedureEvidenceSequence"][0]["ReferencedSeriesSequence"][0]["ReferencedSOPSequence"][
                0
            ]["ReferencedSOPInstanceUID"]
            == pa.sop_instance_uid
        )
        predictions = lake.read_raw(lake_dir, "predictions").to_pylist()
        assert {p["sop_instance_uid"] for p in predictions} == {pa.sop_instance_uid}
        assert len(predictions) == 18 and {p["sr_status"] for p in predictions} == {"stored"}
        # Every other instance is in the lake with its reason; the existing SR is a non-image.
        decisions = {d["sop_instance_uid"]: d for d in lake.read_raw(lake_dir, "pacs_gate_decisions").to_pylist()}
        for instance in study:
            if instance.expected_reason is None:
                assert (
                    instance.sop_instance_uid not in decisions
                    or decisions[instance.sop_instance_uid]["decision"] == "accepted"
                )
            else:
                decision = decisions[instance.sop_instance_uid]
                assert (decision["decision"], decision["reason_code"]) == ("skipped", instance.expected_reason), (
                    instance.name
                )
        assert first["counts"]["skipped"] == len(study) - 1
        runs = lake.read_raw(lake_dir, "model_runs").to_pylist()
        assert {r["run_id"] for r in runs} == {first["run_id"]}  # progress rows per page, then the last
        run = max(runs, key=lambda r: r["finished_at"])
        assert (run["run_kind"], run["run_status"], run["images_ok"], run["images_skipped"]) == (
            "watch",
            "finished",
            1,
            len(study) - 1,
        )
        assert json.loads(run["gate_policy"])["allowed_views"] == ["AP", "PA"]

        # Our SR came back through the feed as a new stable series: the second pass adds nothing.
        wait_until_stable(client, series_count(study) + 1)
        parts_before = sorted(p.name for p in (lake_dir / "raw").rglob("part-*.parquet"))
        second = _watch_once(lake_dir, tmp_path, capsys)
        assert second["counts"]["classified"] == 0 and second["counts"]["skipped"] == 0
        third = _watch_once(lake_dir, tmp_path, capsys)
        assert third["counts"]["files"] == 0
        assert sorted(p.name for p in (lake_dir / "raw").rglob("part-*.parquet")) == parts_before
        assert len(_our_srs(client)) == 1

        # The same feed from the start into another lake, by stable study, the gate widened to laterals and
        # narrowed to instances that name their body part: the lateral is classified too, and the choice is on record.
        wide_lake = tmp_path / "wide_lake"
        wide = _watch_once(
            wide_lake,
            tmp_path,
            capsys,
            "--since",
            "0",
            "--level",
            "study",
            "--allow-view",
            "lateral",
            "--require-body-part",
        )
        lateral = next(i for i in study if i.name == "lateral")
        # Storing our SR changes the study, so it turns stable again: seen twice, classified once.
        per_image = Counter(p["sop_instance_uid"] for p in lake.read_raw(wide_lake, "predictions").to_pylist())
        assert per_image == {pa.sop_instance_uid: 18, lateral.sop_instance_uid: 18}
        flags = {p["sop_instance_uid"]: p["gate_flags"] for p in lake.read_raw(wide_lake, "predictions").to_pylist()}
        assert flags[lateral.sop_instance_uid] == "lateral_allowed;age_absent"  # synthetic: no birth date
        assert wide["ok"] and wide["counts"]["classify_failed"] == 0
        run = max(lake.read_raw(wide_lake, "model_runs").to_pylist(), key=lambda r: r["finished_at"])
        policy = json.loads(run["gate_policy"])
        assert "LL" in policy["allowed_views"] and policy["body_part_absent"] == "skip"
        assert len(_our_srs(client)) == 2


def pydicom_study(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _write_backlog(directory: Path, count: int) -> list[Path]:
    """``count`` synthetic chest CRs (PA, CHEST), each its own study and series."""
    return synth.write_chest_cr_series(directory, count, seed=21, name="watch")


def test_watch_killed_mid_backlog_resumes_with_every_image_classified_exactly_once(
    orthanc_binary, tmp_path, monkeypatch
):
    backlog = _write_backlog(tmp_path / "backlog", 8)
    lake_dir = tmp_path / "lake"
    with _server(orthanc_binary, tmp_path / "orthanc") as server:
        for key, value in _env(server).items():
            monkeypatch.setenv(key, value)
        client = server.client()
        upload(client, backlog)
        wait_until_stable(client, len(backlog))
        env = {**os.environ, **_env(server), "PYTHONPATH": str(REPO_ROOT / "scripts")}
        command = (
            [sys.executable, "-m", "medlake", "pacs", "watch", "--lake", str(lake_dir)]
            + ["--allow-untrained-weights", "--weights-dir", str(tmp_path / "none"), "--no-progress"]
            + ["--page-size", "1", "--land-batch", "1", "--batch-size", "1", "--sr-workers", "1"]
            + ["--results-dir", str(tmp_path / "results"), "--poll-seconds", "0.5", "--once"]
        )
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        predictions_dir = lake_dir / "raw" / "predictions"
        deadline = time.monotonic() + 180
        while len(list(predictions_dir.rglob("part-*.parquet"))) < 2:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the watch landed nothing in 180 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # mid-backlog: some pages landed, one maybe half done
        process.wait(timeout=30)
        landed_before = {p["sop_instance_uid"] for p in lake.read_raw(lake_dir, "predictions").to_pylist()}
        assert 0 < len(landed_before) < len(backlog)
        assert pacs_watch.cursor_path(lake_dir, server.url).exists()

        # Restart it, this time following the feed (no --once): it resumes, then idles until SIGTERM.
        process = subprocess.Popen(
            [*command[:-1], "--format", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 180
        while len({p["sop_instance_uid"] for p in lake.read_raw(lake_dir, "predictions").to_pylist()}) < len(backlog):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the restarted watch did not finish the backlog in 180 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr[-2000:]
        summary = json.loads(stdout)
        assert summary["status"] == "stopped" and summary["ok"]
        last_row = max(
            (r for r in lake.read_raw(lake_dir, "model_runs").to_pylist() if r["run_id"] == summary["run_id"]),
            key=lambda r: r["finished_at"],
        )
        assert last_row["run_status"] == "stopped"
        predictions = lake.read_raw(lake_dir, "predictions").to_pylist()
        per_image = Counter(p["sop_instance_uid"] for p in predictions)
        expected = {synth.uid_for(21, f"watch:{index}:sop") for index in range(len(backlog))}
        assert set(per_image) == expected
        assert set(per_image.values()) == {18}, "an image was classified twice (or partly)"
        assert len(_our_srs(client)) == len(backlog)
        # Nothing that was landed before the kill was classified again.
        assert summary["counts"]["classified"] == len(backlog) - len(landed_before)
