"""``medlake pacs run`` end to end against a real Orthanc, on the real shared DICOMs."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from medlake import cli
from medlake.lake import layout as lake
from medlake.pacs.loop import run as pacs
from medlake.pacs.model import weights
from medlake.pacs.orthanc.client import ALREADY_STORED, SKIPPED, SUCCESS
from medlake.pacs.orthanc.server import OrthancServer, find_free_port
from medlake.pacs.sr import builder as sr_builder

pytestmark = [pytest.mark.orthanc, pytest.mark.torch, pytest.mark.shared]

SIIM = "chest/torchxrayvision__1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
FAKE_MONO1 = "edge_cases/torchxrayvision__Fake_MONOHR1.dcm"
NO_META = "edge_cases/fo-dicom__CR-MONO1-10-chest.dcm"
DOG_DX = "edge_cases/highdicom__dx_image.dcm"
NCCID_NAME = "nccid__1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm"


@pytest.fixture(scope="module")
def pacs_server(orthanc_binary, tmp_path_factory):
    server = OrthancServer(
        port=find_free_port(), storage=tmp_path_factory.mktemp("pacs_orthanc"), binary=orthanc_binary
    )
    server.start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORTHANC_URL", server.url)
        patch.setenv("ORTHANC_USERNAME", server.username)
        patch.setenv("ORTHANC_PASSWORD", server.password)
        yield server
    server.stop()


@pytest.fixture(scope="module")
def first_run(pacs_server, shared_dicom_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("pacs_run")
    summary = pacs.run(
        shared_dicom_dir,
        work / "lake",
        weights_dir=work / "no-weights-here",
        allow_untrained=True,
        workers=4,
        batch_size=4,
        results_dir=work / "results",
        progress=False,
    )
    return summary, work


def rows_by_file(summary) -> dict:
    return {row.file: row for row in summary.files}


def without_run(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "run"}


def test_first_run_uploads_classifies_and_stores_one_sr_per_image(first_run, pacs_server, tmp_path):
    summary, _ = first_run
    assert summary.ok, summary.render()
    rows = rows_by_file(summary)
    assert rows["SOURCE.md"].upload_status == SKIPPED  # not DICOM: reported, not fatal
    # The SIIM file and its UID twin: Orthanc keeps whichever arrived first; exactly that one is classified.
    twins = [rows[SIIM], rows[FAKE_MONO1]]
    assert sorted(row.upload_status for row in twins) == [ALREADY_STORED, SUCCESS]
    assert sorted(row.model_status for row in twins) == [pacs.CLASSIFIED, pacs.NOT_CLASSIFIED]
    assert twins[0].orthanc_id == twins[1].orthanc_id
    assert next(row for row in twins if row.upload_status == ALREADY_STORED).skip_reason == "not_in_pacs"
    classified = [row for row in rows.values() if row.model_status == pacs.CLASSIFIED]
    assert len(classified) == 5 == summary.images_classified
    assert rows[NO_META].model_status == pacs.CLASSIFIED
    # The dog DX: THORAX maps to Chest and it has no ViewPosition, but it is a veterinary image.
    assert (rows[DOG_DX].model_status, rows[DOG_DX].skip_reason) == (pacs.SKIPPED_BY_GATE, "non_human")
    assert "CANINE" in rows[DOG_DX].note

    with pacs_server.client() as client:
        assert client.instance_count() == 11  # 6 images + 5 SRs, nothing twice
        for row in classified:
            assert row.sr_status == SUCCESS and row.placement_verified is True
            (sr_id,) = client.find_instances(row.sr_sop_instance_uid)
            image = client.parents(row.orthanc_id)
            report = client.parents(sr_id)
            assert (report.patient_id, report.study_id) == (image.patient_id, image.study_id)
            assert report.series_id != image.series_id
            # What Orthanc holds is a valid TID 1500 SR about this image.
            stored = tmp_path / f"{row.sr_sop_instance_uid}.dcm"
            stored.write_bytes(client.download(sr_id))
            assert sr_builder.validate(stored).errors == ()
            sr = hd.sr.srread(stored)
            assert sr.SOPInstanceUID == row.sr_sop_instance_uid
            groups = sr.content.get_image_measurement_groups()
            assert len(groups) == 18
            assert {g.source_images[0].referenced_sop_instance_uid for g in groups} == {row.sop_instance_uid}
        # The image without PatientID: its SR is under the same (empty-PatientID) Orthanc patient.
        no_meta = client.parents(rows[NO_META].orthanc_id)
        assert no_meta.patient_main_tags.get("PatientID", "") == ""


def test_results_json_and_lake_tables(first_run, shared_dicom_dir):
    summary, work = first_run
    results = {p.stem: json.loads(p.read_text()) for p in (work / "results").glob("*.json")}
    classified = [row for row in summary.files if row.model_status == pacs.CLASSIFIED]
    assert set(results) == {row.sop_instance_uid for row in classified}
    for row in classified:
        result = results[row.sop_instance_uid]
        assert result["warning"].startswith("UNTRAINED")
        assert result["model"]["weights_trained"] is False
        assert "UNTRAINED" in result["model"]["name"]
        assert result["source"]["file"] == row.file
        assert result["orthanc"]["instance_id"] == row.orthanc_id
        assert result["sr"]["sop_instance_uid"] == row.sr_sop_instance_uid
        assert result["sr"]["placement_verified"] is True
        assert len(result["predictions"]) == 18
        for prediction in result["predictions"]:
            assert prediction["is_positive"] == (prediction["score"] >= prediction["threshold"] == 0.5)
    assert any("no File Meta" in w for w in results["1.2.392.200036.9125.0.19950720112207"]["warnings"])

    predictions = lake.read_raw(work / "lake", "predictions").to_pylist()
    assert len(predictions) == 5 * 18
    assert {p["sr_status"] for p in predictions} == {"stored"}
    assert {p["run_id"] for p in predictions} == {summary.run_id}
    assert {p["weights_trained"] for p in predictions} == {False}
    assert {p["sr_sop_instance_uid"] for p in predictions} == {row.sr_sop_instance_uid for row in classified}
    (model_run,) = lake.read_raw(work / "lake", "model_runs").to_pylist()
    assert (model_run["images_total"], model_run["images_ok"], model_run["images_failed"]) == (5, 5, 0)
    assert (model_run["images_skipped"], model_run["run_kind"], model_run["run_status"]) == (1, "run", "finished")
    import torch

    assert model_run["device"] == str(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    assert model_run["weights_trained"] is False
    assert model_run["weights_sha256"] == summary.model["weights_sha256"]
    uploads = lake.read_raw(work / "lake", "pacs_uploads").to_pylist()
    assert sorted(u["kind"] for u in uploads) == ["image"] * 8 + ["sr"] * 5
    assert {u["status"] for u in uploads if u["kind"] == "sr"} == {SUCCESS}
    skipped = [u for u in uploads if u["status"] == SKIPPED]
    assert [u["source_file"] for u in skipped] == ["SOURCE.md"] and "not a readable DICOM file" in skipped[0]["error"]
    decisions = {d["source"]: d for d in lake.read_raw(work / "lake", "pacs_gate_decisions").to_pylist()}
    assert (decisions[DOG_DX]["decision"], decisions[DOG_DX]["reason_code"]) == ("skipped", "non_human")
    assert decisions["chest/" + NCCID_NAME]["gate_flags"] == "body_part_absent;view_absent;age_absent"


def test_rerun_is_a_new_run_that_stores_nothing_new(first_run, pacs_server, shared_dicom_dir):
    summary, work = first_run
    before = {p.name: json.loads(p.read_text()) for p in (work / "results").glob("*.json")}
    with pacs_server.client() as client:
        count_before = client.instance_count()
    again = pacs.run(
        shared_dicom_dir,
        work / "lake",
        allow_untrained=True,
        weights_dir=work / "no-weights-here",
        workers=2,
        batch_size=8,
        results_dir=work / "results",
        progress=False,
    )
    assert again.ok, again.render()
    assert again.run_id != summary.run_id
    with pacs_server.client() as client:
        assert client.instance_count() == count_before == 11
    assert {row.upload_status for row in again.files if row.file != "SOURCE.md"} == {ALREADY_STORED}
    # What has our SR (and its predictions in the lake) is not classified again.
    first_classified = {row.file for row in summary.files if row.model_status == pacs.CLASSIFIED}
    assert {row.file for row in again.files if row.model_status == "already reported"} == first_classified
    assert again.images_classified == 0
    assert len(lake.read_raw(work / "lake", "predictions")) == 5 * 18  # nothing appended
    after = {p.name: json.loads(p.read_text()) for p in (work / "results").glob("*.json")}
    assert after == before
    runs = lake.read_raw(work / "lake", "model_runs").to_pylist()
    assert sorted(r["run_id"] for r in runs) == sorted([summary.run_id, again.run_id])


def test_missing_weights_exit_2_before_anything_is_uploaded(pacs_server, shared_dicom_dir, tmp_path, capsys):
    with pacs_server.client() as client:
        count = client.instance_count()
    code = cli.main(
        ["pacs", "run", "--input", str(shared_dicom_dir / "chest"), "--lake", str(tmp_path / "lake")]
        + ["--weights-dir", str(tmp_path / "weights"), "--no-progress"]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert weights.official_file_name() in error
    assert "https://github.com/mlmed/torchxrayvision/releases/download/v1/" in error
    assert str(tmp_path / "weights") in error
    assert not (tmp_path / "lake").exists()
    with pacs_server.client() as client:
        assert client.instance_count() == count


def test_weights_with_the_official_name_but_another_digest_exit_2(pacs_server, shared_dicom_dir, tmp_path, capsys):
    import torch
    import torchxrayvision as xrv

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    torch.save(xrv.models.DenseNet(num_classes=18), weights_dir / weights.official_file_name())
    code = cli.main(
        ["pacs", "run", "--input", str(shared_dicom_dir / "chest"), "--lake", str(tmp_path / "lake")]
        + ["--weights-dir", str(weights_dir), "--no-progress"]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "not the official" in error and weights.OFFICIAL_SHA256 in error


def test_unreachable_orthanc_is_one_clear_error(shared_dicom_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ORTHANC_URL", f"http://127.0.0.1:{find_free_port()}")
    code = cli.main(
        ["pacs", "run", "--input", str(shared_dicom_dir / "chest"), "--lake", str(tmp_path / "lake")]
        + ["--allow-untrained-weights", "--weights-dir", str(tmp_path), "--no-progress"]
    )
    assert code == 1
    assert "cannot reach Orthanc" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()


def test_bad_and_odd_files_are_reported_and_the_rest_continues(
    orthanc_factory, orthanc_env, shared_dicom_dir, tmp_path
):
    server = orthanc_factory("pacs_bad_inputs")
    orthanc_env(server)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "dog.dcm").write_bytes((shared_dicom_dir / DOG_DX).read_bytes())
    (inputs / "readme.txt").write_text("not an image")
    # Header intact, pixel data cut short: Orthanc may refuse it or the decoder fails; either way it is reported.
    (inputs / "truncated.dcm").write_bytes(
        (shared_dicom_dir / "chest/pydicom-data__RG1_UNCR.dcm").read_bytes()[:90_000]
    )
    # Pixels above the declared bit depth (JPEG 2000 keeps them; BitsStored lowered to 12).
    ds = pydicom.dcmread(shared_dicom_dir / "chest/pydicom-data__RG1_J2KI.dcm")
    ds.BitsStored, ds.HighBit = 12, 11
    ds.save_as(inputs / "bits_lowered.dcm")

    summary = pacs.run(
        inputs,
        tmp_path / "lake",
        allow_untrained=True,
        weights_dir=tmp_path / "none",
        workers=2,
        batch_size=2,
        results_dir=tmp_path / "results",
        progress=False,
    )
    rows = rows_by_file(summary)
    assert rows["readme.txt"].upload_status == SKIPPED
    truncated = rows["truncated.dcm"]
    # The hardened reader the lake uses refuses it before upload, as landing quarantines it (issue 7).
    assert (truncated.upload_status, truncated.model_status) == (SKIPPED, pacs.NOT_CLASSIFIED)
    assert "pixel data truncated" in truncated.note
    assert summary.ok, summary.render()  # skips and refusals with a reason are not failures
    assert rows["dog.dcm"].skip_reason == "non_human"  # skipped, not a failure
    for name in ("bits_lowered.dcm",):
        assert rows[name].model_status == pacs.CLASSIFIED and rows[name].placement_verified, summary.render()
    bits = json.loads((tmp_path / "results" / f"{rows['bits_lowered.dcm'].sop_instance_uid}.json").read_text())
    assert any("exceed BitsStored=12" in w for w in bits["warnings"])
    assert "(OK)" in summary.render()
    assert Path(tmp_path / "lake" / "raw" / "model_runs").is_dir()


def test_a_symlink_out_of_the_input_is_not_followed(pacs_server, shared_dicom_dir, tmp_path):
    """Issue 9: a delivery cannot make `pacs run` upload (or hash) a file from outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "other-patient.dcm"
    target.write_bytes((shared_dicom_dir / "chest/pydicom-data__RG1_J2KI.dcm").read_bytes())
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "looks-inside.dcm").symlink_to(target)
    (inputs / "passwd").symlink_to("/etc/passwd")
    (inputs / "outside-dir").symlink_to(outside, target_is_directory=True)
    with pacs_server.client() as client:
        before = client.instance_count()
    summary = pacs.run(
        inputs,
        tmp_path / "lake",
        allow_untrained=True,
        weights_dir=tmp_path / "none",
        results_dir=tmp_path / "results",
        progress=False,
    )
    rows = rows_by_file(summary)
    assert set(rows) == {"looks-inside.dcm", "passwd"}  # the directory symlink is not descended
    for row in rows.values():
        assert (row.upload_status, row.model_status) == (SKIPPED, pacs.NOT_CLASSIFIED)
        assert row.note.startswith("outside_delivery_root")
    with pacs_server.client() as client:
        assert client.instance_count() == before
    uploads = lake.read_raw(tmp_path / "lake", "pacs_uploads").to_pylist()
    assert {u["source_file"] for u in uploads} == {"looks-inside.dcm", "passwd"}
    assert {u["source_file_sha256"] for u in uploads} == {None}  # nothing of the targets was read


def test_results_json_carries_a_pseudonym_not_the_patient_id(first_run, shared_dicom_dir):
    """Issue 9 item 9: results/*.json name the patient by the lake's keyed pseudonym only."""
    from medlake.lake import pseudonyms

    summary, work = first_run
    key = pseudonyms.pseudonym_key(work / "lake")
    patient_ids = {}
    for row in summary.files:
        if row.model_status == pacs.CLASSIFIED:
            dataset = pydicom.dcmread(shared_dicom_dir / row.file, stop_before_pixels=True, force=True)
            patient_ids[row.sop_instance_uid] = str(dataset.get("PatientID", "") or "")
    assert any(patient_ids.values())
    for path in (work / "results").glob("*.json"):
        text = path.read_text()
        result = json.loads(text)
        patient_id = patient_ids[path.stem]
        assert "patient_id" not in result["source"] and "patient_id" not in result["orthanc"]
        assert result["source"]["patient_pseudonym"] == pseudonyms.pseudonymise(key, patient_id)
        if patient_id:
            assert patient_id not in text
        assert path.stat().st_mode & 0o007 == 0, "results JSON must not be readable by other users"
