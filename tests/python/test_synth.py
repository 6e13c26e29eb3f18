"""``medlake synth``: determinism, the raw shape (checked by landing it), and real DICOMs."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import duckdb
import pydicom
import pytest

from medlake.cli import main
from medlake.devtools import synth
from medlake.errors import SynthError
from medlake.lake import landing
from medlake.lake.json_records import parse_delivery_file
from medlake.lake.layout import read_raw

EXAMS = 2_500  # three blocks: exercises the worker pool and block boundaries


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "delivery"
    summary = synth.generate(out, exams=EXAMS, seed=11, dicom_exams=6, progress=False, workers=2)
    return out, summary


@pytest.fixture(scope="module")
def landed(delivery, tmp_path_factory):
    out, _ = delivery
    lake = tmp_path_factory.mktemp("synth-lake") / "lake"
    return lake, landing.land(out, lake, delivery_date=None, workers=1, progress=False)


def test_same_seed_same_bytes_whatever_the_worker_count(delivery, tmp_path):
    out, summary = delivery
    again = synth.generate(tmp_path / "again", exams=EXAMS, seed=11, dicom_exams=6, progress=False, workers=1)
    assert tree_digest(tmp_path / "again") == tree_digest(out)
    assert again.ground_truth() == summary.ground_truth()


def test_different_seed_different_bytes(delivery, tmp_path):
    out, _ = delivery
    synth.generate(tmp_path / "other", exams=EXAMS, seed=12, dicom_exams=6, progress=False, workers=1)
    assert tree_digest(tmp_path / "other") != tree_digest(out)


def test_regenerating_into_its_own_output_replaces_it_and_a_foreign_dir_is_refused(tmp_path):
    out = tmp_path / "small"
    synth.generate(out, exams=30, seed=1, dicom_exams=0, progress=False)
    first = tree_digest(out)
    (out / "exam" / "stale.json").write_text("[]")
    synth.generate(out, exams=30, seed=1, dicom_exams=0, progress=False)
    assert tree_digest(out) == first
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(SynthError, match="not written by medlake synth"):
        synth.generate(foreign, exams=5, seed=1, dicom_exams=0, progress=False)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_summary_reports_the_injected_quirks(delivery):
    out, summary = delivery
    assert summary.exam_records == EXAMS
    assert summary.distinct_exam_ids + summary.exams_without_id + summary.redelivered_records == EXAMS
    assert summary.redelivered_records > 0
    assert summary.invalid_json_files >= 1 and summary.records_without_content >= 1
    assert summary.label_not_object >= 1 and summary.empty_files >= 1 and summary.whitespace_files >= 1
    assert summary.json_lines_files >= 1 and summary.single_object_files >= 1
    assert summary.covid_without_pneumonia_by_month.get("2021-12", 0) > 0
    assert json.loads((out / synth.SUMMARY_FILE).read_text()) == summary.ground_truth()
    assert "exam records (landable)" in summary.render()
    sizes = [len(parse_delivery_file(path.read_bytes()).records) for path in (out / "exam").iterdir()]
    # 1-4 records per file (a record without content only joins a file of 1-3 exams); the empty and
    # invalid files have none.
    assert sorted(set(sizes)) == [0, 1, 2, 3, 4]


def test_landing_it_gives_exactly_the_summary_counts(delivery, landed):
    _, summary = delivery
    lake, land_summary = landed
    exams = read_raw(lake, "exams")
    assert exams.num_rows == summary.exam_records
    assert len(set(exams["id"].drop_null().to_pylist())) == summary.distinct_exam_ids
    assert exams["id"].null_count == summary.exams_without_id
    assert read_raw(lake, "exam_labels").num_rows == summary.label_objects
    assert read_raw(lake, "medical_reports").num_rows == summary.report_records
    assert land_summary.quarantined == {
        "invalid_json": summary.invalid_json_files,
        "missing_content": summary.records_without_content,
        "label_not_object": summary.label_not_object,
    }
    assert sum(land_summary.quarantined.values()) == summary.quarantine_rows_expected
    assert land_summary.files_seen == {
        "exam": summary.exam_files,
        "medical_report": summary.report_files,
        "image": summary.dicom_files,
    }
    assert {type(v) for v in exams["id"].drop_null().to_pylist()} == {str}
    sources = set(exams["source"].drop_null().to_pylist())
    assert "hospital ABC" in sources and '["hospital ABC"]' in sources  # both shapes delivered


def test_expected_answer_matches_the_landed_raw_data(delivery, landed):
    """The summary's covid-without-pneumonia counts, recomputed from the lake with its stated semantics."""
    _, summary = delivery
    lake, _ = landed
    raw = (lake / "raw").as_posix()
    query = f"""
        with exams as (
            select id, source_file, record_position, cast(publication_timestamp as double) as published,
                   row_number() over (partition by id order by cast(publication_timestamp as double) desc) as rank
            from read_parquet('{raw}/exams/*/*.parquet') where id is not null
        ),
        latest as (select * from exams where rank = 1),
        positive as (
            select l.source_file, l.record_position,
                   case when lower(replace(l.classification, '-', '')) in ('covid19', 'covid') then 'covid'
                        else lower(l.classification) end as finding
            from read_parquet('{raw}/exam_labels/*/*.parquet') l where l.value = 'true' or l.value = 'True'
        )
        select strftime(to_timestamp(published), '%Y-%m') as month, count(*) as n
        from latest e
        where exists (select 1 from positive p where p.source_file = e.source_file
                      and p.record_position = e.record_position and p.finding = 'covid')
          and not exists (select 1 from positive p where p.source_file = e.source_file
                          and p.record_position = e.record_position and p.finding = 'pneumonia')
        group by 1 order by 1
    """
    recomputed = dict(duckdb.sql(query).fetchall())
    assert recomputed == summary.covid_without_pneumonia_by_month


def test_dicoms_are_valid_chest_crs_named_by_the_sop_uid_the_exam_points_to(delivery, landed):
    out, summary = delivery
    lake, _ = landed
    images = sorted((out / "images").iterdir())
    assert len(images) == summary.dicom_files == 6
    exams_by_file = {}
    for exam in read_raw(lake, "exams").to_pylist():
        if exam["image_path"]:
            exams_by_file.setdefault(exam["image_path"].rsplit("/", 1)[-1], []).append(exam)
    for path in images:
        ds = pydicom.dcmread(path)
        assert path.name == f"{ds.SOPInstanceUID}.dcm"
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
        assert (ds.Modality, ds.BodyPartExamined, ds.ViewPosition) == ("CR", "CHEST", "PA")
        assert ds.SOPInstanceUID.startswith("2.25.") and len(ds.SOPInstanceUID) <= 64
        assert ds.pixel_array.max() <= 2**ds.BitsStored - 1
        assert ds.pixel_array.std() > 100  # a picture, not a flat field
        exams = exams_by_file[path.name]
        assert {exam["body_part"].lower() for exam in exams} == {"chest"}
    instances = read_raw(lake, "dicom_instances").to_pylist()
    assert {row["file_name"] for row in instances} == {path.name for path in images}
    assert len({row["study_instance_uid"] for row in instances}) == 6


@pytest.mark.torch
def test_torchxrayvision_reads_the_synthetic_dicoms(delivery):
    xrv = pytest.importorskip("torchxrayvision")
    out, _ = delivery
    for path in sorted((out / "images").iterdir())[:2]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONOCHROME1 files warn about their conversion, as expected
            image = xrv.utils.read_xray_dcm(str(path))
        assert image.shape == (320, 256)
        assert -1024 <= image.min() < image.max() <= 1024


def test_an_increment_redelivers_base_exams_with_the_same_identity_and_new_exams_after_them(delivery, tmp_path):
    base_out, base = delivery
    lake = tmp_path / "lake"
    landing.land(base_out, lake, delivery_date=None, workers=1, progress=False)
    increment = synth.generate_increment(
        tmp_path / "inc", exams=300, seed=5, base_exams=EXAMS, base_seed=11, base_dicom_exams=6
    )
    assert increment.exam_records == 300
    increment_files = {f"exam/{p.name}" for p in (tmp_path / "inc" / "exam").iterdir()}
    assert not increment_files & {f"exam/{p.name}" for p in (base_out / "exam").iterdir()}
    second = landing.land(tmp_path / "inc", lake, delivery_date=None, workers=1, progress=False)
    assert second.rows_landed["exams"] == 300
    exams = read_raw(lake, "exams").to_pylist()
    new = [exam for exam in exams if exam["source_file"] in increment_files]
    old = [exam for exam in exams if exam["source_file"] not in increment_files]
    new_ids = {int(exam["id"]) for exam in new if exam["id"] is not None}
    redelivered = {exam_id for exam_id in new_ids if exam_id <= EXAMS}
    assert len(redelivered) >= 20  # 10 % of the increment re-delivers base exams
    assert min(new_ids - redelivered) == EXAMS + 1
    latest_base = max(float(exam["publication_timestamp"]) for exam in old)
    assert min(float(exam["publication_timestamp"]) for exam in new) > latest_base
    # Every delivery of an exam (the base's re-deliveries and the increment's) has one identity.
    identities: dict[str, set] = {}
    for exam in exams:
        if exam["id"] is not None:
            identity = (exam["source"], exam["body_part"], exam["image_path"], exam["dataset"])
            identities.setdefault(exam["id"], set()).add(identity)
    conflicts = {i: v for i, v in identities.items() if len({x for x in v if None not in x}) > 1}
    assert conflicts == {}
    assert sum(1 for v in identities.values() if len(v) == 1) > 0
    assert base.redelivered_records > 0


def test_synth_command(tmp_path, capsys):
    code = main(["synth", "--out", str(tmp_path / "d"), "--exams", "40", "--seed", "3", "--no-progress"])
    assert code == 0
    assert "exam records (landable)" in capsys.readouterr().out
    assert len(list((tmp_path / "d" / "images").iterdir())) == 24  # default: min(24, exams)


def test_records_per_file_writes_bulk_export_files_that_land_as_the_summary_says(tmp_path):
    """Issue 19 item 2: a delivery of large files (arrays and JSON lines), landed record for record."""
    out = tmp_path / "bulk"
    summary = synth.generate(out, exams=EXAMS, seed=11, dicom_exams=0, progress=False, workers=2, records_per_file=500)
    layouts = {}
    for path in (out / "exam").iterdir():
        parsed = parse_delivery_file(path.read_bytes())
        layouts.setdefault(str(parsed.layout), []).append(len(parsed.records))
    # 1,000-exam blocks in files of 500 (plus the re-deliveries' file and the injected bad files)
    assert summary.exam_files < EXAMS / 100
    assert max(max(sizes) for sizes in layouts.values()) == 501  # 500 exams + the record without content
    assert "json_lines" in layouts and "array" in layouts
    lake = tmp_path / "lake"
    land_summary = landing.land(out, lake, delivery_date=None, workers=1, progress=False)
    assert read_raw(lake, "exams").num_rows == summary.exam_records == EXAMS
    assert read_raw(lake, "medical_reports").num_rows == summary.report_records
    assert read_raw(lake, "exam_labels").num_rows == summary.label_objects
    assert sum(land_summary.quarantined.values()) == summary.quarantine_rows_expected
    with pytest.raises(SynthError, match="records per file"):
        synth.generate(tmp_path / "too_big", exams=10, seed=1, progress=False, records_per_file=synth.BLOCK_EXAMS + 1)
