"""DICOM header scanning on the real shared DICOMs and on broken files built in the test."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from medlake.cli import main
from medlake.errors import DicomError
from medlake.lake import dicom_headers, landing, scanning
from medlake.lake.image_files import looks_like_bare_dicom, read_file_facts, sniff_media_type
from medlake.lake.layout import read_raw
from medlake.lake.raw_schema import DICOM_INSTANCES

BARE = "edge_cases/fo-dicom__CR-MONO1-10-chest.dcm"
SIIM = "chest/torchxrayvision__1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
FAKE_MONO1 = "edge_cases/torchxrayvision__Fake_MONOHR1.dcm"
RG1_UNCR = "chest/pydicom-data__RG1_UNCR.dcm"
RG1_J2KI = "chest/pydicom-data__RG1_J2KI.dcm"


def rows(lake: Path, table: str) -> list[dict]:
    return read_raw(lake, table).to_pylist()


@pytest.fixture(scope="module")
def scanned(shared_dicom_dir, tmp_path_factory):
    lake = tmp_path_factory.mktemp("scan") / "lake"
    summary = scanning.scan_directory(shared_dicom_dir, lake, delivery_date=None, progress=False)
    instances = {row["source_file"]: row for row in rows(lake, "dicom_instances")}
    return lake, summary, instances


def test_scan_finds_the_seven_dicoms_and_indexes_the_other_file(scanned):
    lake, summary, instances = scanned
    assert len(instances) == 7
    files = {row["source_file"]: row for row in rows(lake, "image_files")}
    assert len(files) == 8
    readme = files["SOURCE.md"]
    assert (readme["media_type"], readme["is_dicom"]) == ("application/octet-stream", False)
    assert "SOURCE.md" not in instances
    assert all(files[name]["is_dicom"] and files[name]["media_type"] == "application/dicom" for name in instances)
    assert summary.dicom_instances == 7
    assert summary.files_seen == summary.files_landed == 8
    assert summary.quarantined == {}
    assert "DICOM instances" in summary.render()
    assert summary.to_dict()["media_types"] == {"application/dicom": 7, "application/octet-stream": 1}


def test_file_without_preamble_or_file_meta_is_read_with_nulls_for_what_it_lacks(scanned):
    _, _, instances = scanned
    bare = instances[BARE]
    assert bare["has_file_meta"] is False
    assert bare["transfer_syntax_uid"] is None
    assert bare["patient_id"] is None
    assert bare["study_instance_uid"] == bare["series_instance_uid"] == "1.2.392.200036.9125.0.199302241758.16"
    assert (bare["modality"], bare["rows"], bare["columns"], bare["bits_stored"]) == ("CR", 440, 440, 10)
    assert bare["file_name"] == "fo-dicom__CR-MONO1-10-chest.dcm"


def test_header_values_match_the_documented_ones(scanned):
    _, _, instances = scanned
    uncr = instances[RG1_UNCR]
    assert uncr["has_file_meta"] is True
    assert uncr["transfer_syntax_uid"] == "1.2.840.10008.1.2.1"
    assert (uncr["modality"], uncr["body_part_examined"], uncr["view_position"]) == ("CR", "CHEST", "PA")
    assert (uncr["rows"], uncr["columns"], uncr["bits_allocated"], uncr["bits_stored"]) == (1955, 1841, 16, 15)
    assert uncr["photometric_interpretation"] == "MONOCHROME1"
    assert uncr["patient_id"] == "9RG1"
    assert uncr["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.1"
    nccid = next(row for name, row in instances.items() if name.startswith("chest/nccid__"))
    assert (nccid["patient_age"], nccid["patient_sex"], nccid["body_part_examined"]) == ("81", "M", None)
    assert "patient_name" not in DICOM_INSTANCES.names  # PHI minimisation


def test_two_images_of_one_series_keep_distinct_sop_uids(scanned):
    _, _, instances = scanned
    uncr, j2ki = instances[RG1_UNCR], instances[RG1_J2KI]
    assert uncr["series_instance_uid"] == j2ki["series_instance_uid"]
    assert uncr["sop_instance_uid"] != j2ki["sop_instance_uid"]


def test_duplicate_uid_file_is_a_second_row_with_its_own_sha256(scanned):
    _, _, instances = scanned
    siim, fake = instances[SIIM], instances[FAKE_MONO1]
    assert siim["sop_instance_uid"] == fake["sop_instance_uid"]
    assert siim["source_file_sha256"] != fake["source_file_sha256"]
    assert (siim["photometric_interpretation"], fake["photometric_interpretation"]) == ("MONOCHROME2", "MONOCHROME1")


def test_rescan_adds_nothing(scanned, shared_dicom_dir):
    lake, _, _ = scanned
    again = scanning.scan_directory(shared_dicom_dir, lake, delivery_date=None, progress=False)
    assert (again.files_landed, again.files_skipped, again.dicom_instances) == (0, 8, 0)
    assert len(rows(lake, "dicom_instances")) == 7


# --- broken and non-DICOM files -----------------------------------------------------


@pytest.fixture
def odd_images(shared_dicom_dir, tmp_path):
    """A delivery whose images/ holds real, cut-short, garbage and non-DICOM files."""
    images = tmp_path / "delivery" / "images"
    images.mkdir(parents=True)
    uncr = (shared_dicom_dir / RG1_UNCR).read_bytes()
    (images / "good.dcm").write_bytes(uncr)  # a copy: a symlink out of the delivery is refused (issue 9)
    (images / "cut_in_pixels.dcm").write_bytes(uncr[:100_000])
    (images / "cut_in_header.dcm").write_bytes(uncr[:1_500])
    (images / "garbage.dcm").write_bytes(random.Random(7).randbytes(4_000))
    # A bare dataset under a name that says nothing: found by its first tag, not its name.
    (images / "CR-MONO1-10-chest").write_bytes((shared_dicom_dir / BARE).read_bytes())
    (images / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    (images / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    (images / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(32))
    (images / "blob.bin").write_bytes(random.Random(8).randbytes(300))
    return tmp_path / "delivery"


def test_land_images_indexes_every_file_and_quarantines_unreadable_dicoms(odd_images, tmp_path):
    lake = tmp_path / "lake"
    summary = landing.land(odd_images, lake, delivery_date=None, workers=1, progress=False)
    files = {row["file_name"]: row for row in rows(lake, "image_files")}
    assert {name: row["media_type"] for name, row in files.items()} == {
        "good.dcm": "application/dicom",
        "cut_in_pixels.dcm": "application/dicom",
        "cut_in_header.dcm": "application/dicom",
        "garbage.dcm": "application/octet-stream",
        "CR-MONO1-10-chest": "application/dicom",
        "report.pdf": "application/pdf",
        "photo.png": "image/png",
        "photo.jpg": "image/jpeg",
        "blob.bin": "application/octet-stream",
    }
    assert files["good.dcm"]["size_bytes"] == 7_200_056
    instances = {row["file_name"] for row in rows(lake, "dicom_instances")}
    assert instances == {"good.dcm", "CR-MONO1-10-chest"}
    assert {name for name, row in files.items() if row["is_dicom"]} == instances
    quarantine = {row["source_file"]: row for row in rows(lake, "quarantine")}
    assert set(quarantine) == {"images/cut_in_pixels.dcm", "images/cut_in_header.dcm", "images/garbage.dcm"}
    assert all(q["entity"] == "image" and q["reason_code"] == "unreadable_dicom" for q in quarantine.values())
    assert "pixel data truncated" in quarantine["images/cut_in_pixels.dcm"]["reason"]
    assert "cut short" in quarantine["images/cut_in_header.dcm"]["reason"]
    assert summary.quarantined == {"unreadable_dicom": 3}
    manifest = {row["source_file"]: row for row in rows(lake, "landed_files")}
    assert len(manifest) == 9 and {row["entity"] for row in manifest.values()} == {"image"}
    assert manifest["images/garbage.dcm"]["records_quarantined"] == 1
    again = landing.land(odd_images, lake, delivery_date=None, workers=1, progress=False)
    assert again.files_skipped == {"image": 9} and again.files_landed == {}


def test_read_header_rejects_a_file_that_is_not_dicom(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM")
    with pytest.raises(DicomError, match="SOP Instance UID"):
        dicom_headers.read_header(path, file_size=132)


def test_sniffing_uses_bytes_not_names(shared_dicom_dir):
    facts = read_file_facts(shared_dicom_dir / BARE)
    assert facts.media_type == "application/octet-stream"  # no magic at all...
    assert looks_like_bare_dicom(facts.head)  # ...but it starts like a dataset
    assert not looks_like_bare_dicom(b"# Chest X-ray DICOM test files")
    assert sniff_media_type(b"\0" * 128 + b"DICM") == "application/dicom"
    assert facts.size_bytes == 387_976
    assert facts.sha256 == "ee3da313f01d2b5054d635da07a5295ceb2886b1e332dc2ff3c4c318a18c86c1"


def test_scan_dicom_command(shared_dicom_dir, tmp_path, capsys):
    code = main(["scan-dicom", "--input", str(shared_dicom_dir), "--lake", str(tmp_path / "lake"), "--no-progress"])
    assert code == 0
    assert "DICOM instances         7" in capsys.readouterr().out
    code = main(["scan-dicom", "--input", str(tmp_path / "missing"), "--lake", str(tmp_path / "lake")])
    assert code == 1
