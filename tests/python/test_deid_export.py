"""A de-identified export of a delivery with identifiers planted everywhere the issue found them:
DICOM attributes, a PNG tEXt chunk, a PDF, report texts and the manifest's source and dates.
Every exported byte and cell is then searched for the planted strings (by this test, not by the
export's own PHI check), and ``medlake dataset verify-deid`` must agree, and catch a tampered copy.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import struct
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pydicom
import pytest
from PIL import Image, PngImagePlugin
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medlake.cli import main
from medlake.dataset import ExportFilters, export_dataset
from medlake.dataset.deid import Keys
from medlake.dataset.phi_check import PhiFoundError
from medlake.lake import landing, pseudonyms
from medlake.warehouse import dbt_runner

pytestmark = pytest.mark.slow

INSTITUTION = "St Planted Hospital"
REPORTER, LABELLER = "Fernanda Reporterson", "Labelia Personne"
PATIENTS = [  # name, MRN, accession, birth date, study date
    ("Plantedname^Johanna", "MRN-100001", "ACC-900001", "19230405", "20210304"),
    ("Secondperson^Kalle", "MRN-100002", "ACC-900002", "19450607", "20210411"),
    ("Thirdone^Ludmila", "MRN-100003", "ACC-900003", "19600809", "20210513"),
    ("Fourthly^Mateus", "MRN-100004", "ACC-900004", "19701011", "20210615"),
]
SECRETS = {
    value
    for name, mrn, accession, birth, study in PATIENTS
    for value in (*name.split("^"), mrn, accession, birth, study)
} | {INSTITUTION, REPORTER, LABELLER, "Reporterson", "Personne"}


def _shared_dicoms(shared_dicom_dir: Path) -> list[Path]:
    return [
        next((shared_dicom_dir / "chest").glob("nccid__*.dcm")),
        next((shared_dicom_dir / "chest").glob("torchxrayvision__*.dcm")),
        shared_dicom_dir / "edge_cases" / "highdicom__dx_image.dcm",
        Path(get_testdata_file("CT_small.dcm")),
    ]


def _plant(ds: Dataset, patient: tuple[str, ...]) -> None:
    name, mrn, _, _, study = patient
    ds.PatientName, ds.PatientID, ds.AccessionNumber, ds.PatientBirthDate, ds.StudyDate = patient
    ds.StudyDescription = f"CHEST {name}"
    ds.SeriesDescription = f"PA {mrn}"
    ds.ImageComments = f"{name} {mrn}"
    ds.PatientComments = name
    ds.InstitutionName = INSTITUTION
    ds.ProtocolName = name
    ds.DeviceSerialNumber = mrn
    ds.PatientAge = "095Y"
    text = Dataset()
    text.ValueType = "TEXT"
    text.TextValue = f"{name} {mrn} {study}"
    ds.ContentSequence = Sequence([text])
    ds.add_new(0x60000022, "LO", name)
    if "file_meta" in ds:
        ds.file_meta.SourceApplicationEntityTitle = mrn[:16]


def _png_with_text(path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", f"{PATIENTS[0][0]} {PATIENTS[0][1]}")
    info.add_itxt("Comment", PATIENTS[1][0], zip=True)
    Image.new("L", (64, 48), 90).save(path, pnginfo=info)


def _pdf_with_name(path: Path) -> None:
    body = f"BT /F1 12 Tf 72 720 Td ({PATIENTS[2][0]} {PATIENTS[2][1]}) Tj ET".encode()
    head = b"%PDF-1.4\n1 0 obj << /Length " + str(len(body)).encode() + b" >> stream\n"
    path.write_bytes(head + body + b"\nendstream endobj\n%%EOF\n")


def _delivery(root: Path, shared_dicom_dir: Path) -> Path:
    delivery = root / "delivery"
    for folder in ("exam", "medical_report", "images"):
        (delivery / folder).mkdir(parents=True)
    files = []
    for index, (source, patient) in enumerate(zip(_shared_dicoms(shared_dicom_dir), PATIENTS, strict=True)):
        ds = pydicom.dcmread(source, force=True)
        _plant(ds, patient)
        target = delivery / "images" / f"IM{index}.dcm"
        ds.save_as(target, enforce_file_format="TransferSyntaxUID" in ds.file_meta)
        files.append(target.name)
    _png_with_text(delivery / "images" / "photo.png")
    _pdf_with_name(delivery / "images" / "scan.pdf")
    files += ["photo.png", "scan.pdf"]
    exams, reports = [], []
    for exam_id, file_name in enumerate(files, 1):
        name, mrn, accession, _, study = PATIENTS[(exam_id - 1) % len(PATIENTS)]
        published = dt.datetime(2021, 7, exam_id, 12, tzinfo=dt.UTC).timestamp()
        label = {"classification": "covid19", "labelled_by": LABELLER, "labelled_date": "2021-02-15"}
        label |= {"labelling_method": "physician", "classification_type": "binary", "value": exam_id % 2 == 0}
        exams.append(
            {
                "content": {
                    "id": exam_id,
                    "source": [INSTITUTION],
                    "dataset_type": "private",
                    "dataset": "batch",
                    "body_part": "chest",
                    "image_path": f"gs://bucket/{file_name}",
                    "labels": [label],
                },
                "publication_timestamp": published,
            }
        )
        given_family = " ".join(reversed(name.split("^")))
        text = (
            f"Patient {given_family} ({mrn}, accession {accession}), seen on {study[:4]}-{study[4:6]}-{study[6:]} "
            f"and {study[6:]}/{study[4:6]}/{study[:4]}. Reported by Dr. {REPORTER}. Lungs clear."
        )
        report = {"exam_id": exam_id, "report_date": "2021-07-20", "reported_by": REPORTER, "text": text}
        reports.append({"content": report, "publication_timestamp": published + 60})
    (delivery / "exam" / "batch.json").write_bytes(orjson.dumps(exams))
    (delivery / "medical_report" / "batch.json").write_bytes(orjson.dumps(reports))
    return delivery


@pytest.fixture(scope="module")
def planted_lake(tmp_path_factory, shared_dicom_dir):
    root = tmp_path_factory.mktemp("planted")
    delivery = _delivery(root, shared_dicom_dir)
    lake = root / "lake"
    landing.land(delivery, lake, delivery_date=dt.date(2021, 8, 1), workers=1, progress=False)
    dbt_runner.build(lake, full_refresh=False, select=None, docs=False, quiet=True)
    out = root / "export"
    summary = export_dataset(lake, out, filters=ExportFilters(include_unlabelled=True), progress=False, workers=1)
    yield {"root": root, "lake": lake, "delivery": delivery, "out": out, "summary": summary}
    shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)


def _hits(path: Path) -> set[str]:
    """The planted strings in one exported file: its bytes, and for Parquet every decoded cell."""
    texts = [path.read_bytes().decode("latin-1")]
    if path.suffix == ".parquet":
        texts += [str(value) for column in pq.read_table(path).to_pydict().values() for value in column]
    if path.suffix == ".png":
        texts += [str(value) for value in Image.open(path).info.values()]
    joined = "\n".join(texts).lower()
    return {secret for secret in SECRETS if secret.lower() in joined}


def test_no_planted_identifier_in_any_exported_file(planted_lake):
    out = planted_lake["out"]
    files = [path for path in out.rglob("*") if path.is_file()]
    assert {path.suffix for path in files} >= {".dcm", ".png", ".txt", ".parquet", ".json", ".md"}
    assert {str(path.relative_to(out)): _hits(path) for path in files if _hits(path)} == {}


def test_manifest_dates_are_shifted_per_patient_and_source_is_left_out(planted_lake):
    rows = pq.read_table(planted_lake["out"] / "manifest.parquet").to_pylist()
    assert "source" not in rows[0] and "patient_id" not in rows[0]
    keys = Keys(pseudonyms.pseudonym_key(planted_lake["lake"]))
    for row in rows:
        real = dt.datetime(2021, 7, row["exam_id"], 12)
        group = row["patient_key"] or f"exam:{row['exam_key']}"
        assert row["published_at"] == real + dt.timedelta(days=keys.date_offset_days(group))
        if row["image_status"] == "exported" and row["image_path"].endswith(".dcm"):
            ds = pydicom.dcmread(planted_lake["out"] / row["image_path"])
            study = dt.datetime.strptime(PATIENTS[row["exam_id"] - 1][4], "%Y%m%d")
            shifted = study + dt.timedelta(days=keys.date_offset_days(group))
            assert ds.StudyDate == shifted.strftime("%Y%m%d") and ds.PatientID == row["patient_key"]


def test_png_is_reencoded_without_text_chunks_and_the_pdf_is_left_out(planted_lake):
    out, delivery = planted_lake["out"], planted_lake["delivery"]
    rows = {row["exam_id"]: row for row in pq.read_table(out / "manifest.parquet").to_pylist()}
    png = out / rows[5]["image_path"]
    chunks = set()
    data = png.read_bytes()
    position = 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunks.add(kind)
        position += 12 + length
    assert chunks <= {b"IHDR", b"IDAT", b"IEND"}
    assert list(Image.open(png).getdata()) == list(Image.open(delivery / "images" / "photo.png").getdata())
    assert rows[6]["image_status"] == "left_out_document" and rows[6]["image_path"] is None
    card = json.loads((out / "dataset.json").read_text())
    documents = card["deidentification"]["documents"]
    assert documents["left_out"] == 1 and documents["included"] is False and "cannot" in documents["reason"]
    assert [code["code_value"] for code in card["deidentification"]["method_codes"]] == ["113100", "113107", "113105"]
    assert "not guaranteed" in (out / "DATASET.md").read_text().lower()


def test_report_texts_are_scrubbed_and_their_dates_shifted(planted_lake):
    out = planted_lake["out"]
    keys = Keys(pseudonyms.pseudonym_key(planted_lake["lake"]))
    for row in pq.read_table(out / "manifest.parquet").to_pylist():
        text = (out / row["report_path"]).read_text()
        assert "[REDACTED]" in text and "Lungs clear." in text
        if row["exam_id"] <= len(PATIENTS):
            offset = keys.date_offset_days(row["patient_key"] or f"exam:{row['exam_key']}")
            study = dt.datetime.strptime(PATIENTS[row["exam_id"] - 1][4], "%Y%m%d") + dt.timedelta(days=offset)
            assert study.strftime("%Y-%m-%d") in text and study.strftime("%d/%m/%Y") in text


def test_verify_deid_passes_the_export_and_names_file_and_field_of_a_leak(planted_lake, tmp_path, capsys):
    out, lake = planted_lake["out"], planted_lake["lake"]
    assert main(["dataset", "verify-deid", str(out), "--lake", str(lake), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["clean"] is True
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    rows = pq.read_table(tampered / "manifest.parquet").to_pylist()
    report = tampered / rows[0]["report_path"]
    report.write_text(report.read_text() + f" {PATIENTS[rows[0]['exam_id'] - 1][1]}\n")
    shutil.copy(planted_lake["delivery"] / "images" / "photo.png", tampered / "images" / "extra.png")
    assert main(["dataset", "verify-deid", str(tampered), "--lake", str(lake), "--format", "json"]) == 3
    document = json.loads(capsys.readouterr().out)
    found = {(finding["file"], finding["kind"]) for finding in document["findings"]}
    assert (rows[0]["report_path"], "PatientID") in found
    assert any(file == "images/extra.png" and kind == "patient name" for file, kind in found)
    assert all(secret not in json.dumps(document) for secret in SECRETS)  # the values are never printed


def test_an_export_the_check_fails_is_not_published(planted_lake, tmp_path):
    out = tmp_path / "with-documents"
    with pytest.raises(PhiFoundError, match=r"images/.*\.pdf: bytes: patient name"):
        export_dataset(
            planted_lake["lake"],
            out,
            filters=ExportFilters(include_unlabelled=True),
            include_documents=True,
            progress=False,
            workers=1,
        )
    assert not out.exists() and not list(tmp_path.glob(".with-documents*"))


def test_zlib_compressed_itxt_is_searched_too(tmp_path):
    # the check decompresses iTXt/zTXt: a compressed name is still a name
    from medlake.dataset.phi_check import CheckScope, check_export

    _png_with_text(tmp_path / "p.png")
    assert PATIENTS[1][0].encode() not in (tmp_path / "p.png").read_bytes()
    findings = check_export(tmp_path, CheckScope(texts={"Secondperson": "patient name"}))
    assert [(finding.field, finding.kind) for finding in findings] == [("PNG iTXt chunk", "patient name")]
