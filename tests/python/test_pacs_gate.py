"""The intended-use gate on real DICOM headers (the shared files, changed with pydicom); no Orthanc."""

from __future__ import annotations

import csv

import pydicom
import pytest

from medlake.pacs import gate
from medlake.pacs.gate import GateFlag, GatePolicy, SkipReason
from medlake.settings import dbt_project_dir

pytestmark = [pytest.mark.shared]

RG1 = "chest/pydicom-data__RG1_UNCR.dcm"
NCCID = "chest/nccid__1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm"
DOG_DX = "edge_cases/highdicom__dx_image.dcm"


@pytest.fixture
def chest_pa(shared_dicom_dir):
    """A real Philips CR: Modality CR, BodyPartExamined CHEST, ViewPosition PA, MONOCHROME1."""
    return pydicom.dcmread(shared_dicom_dir / RG1, stop_before_pixels=True)


def test_the_real_chest_files_are_accepted_and_absent_tags_flagged(shared_dicom_dir, chest_pa):
    assert gate.evaluate(chest_pa).accepted and gate.evaluate(chest_pa).flags == ()
    nccid = gate.evaluate(pydicom.dcmread(shared_dicom_dir / NCCID, stop_before_pixels=True))
    assert nccid.accepted and nccid.flags == (GateFlag.BODY_PART_ABSENT, GateFlag.VIEW_ABSENT)


def test_the_dog_dx_is_skipped_as_non_human(shared_dicom_dir):
    dog = pydicom.dcmread(shared_dicom_dir / DOG_DX, stop_before_pixels=True)
    # THORAX maps to Chest and there is no ViewPosition: only its veterinary description gives it away.
    assert gate.lake_taxonomy().canonical(dog.BodyPartExamined) == "Chest" and "ViewPosition" not in dog
    verdict = gate.evaluate(dog)
    assert (verdict.reason, verdict.accepted) == (SkipReason.NON_HUMAN, False)
    assert "CANINE" in verdict.detail
    dog.AcquisitionDeviceProcessingDescription, dog.InstitutionName = "THORAX", ""
    dog.PatientSpeciesDescription = "Canis lupus familiaris"
    assert gate.evaluate(dog).reason == SkipReason.NON_HUMAN


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.22", "Modality": "SR"}, SkipReason.NON_IMAGE),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.59", "Modality": "KO"}, SkipReason.NON_IMAGE),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.11.1", "Modality": "PR"}, SkipReason.NON_IMAGE),
        ({"Modality": "CT"}, SkipReason.MODALITY),
        ({"Modality": "MG"}, SkipReason.MODALITY),
        ({"PresentationIntentType": "FOR PROCESSING"}, SkipReason.FOR_PROCESSING),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.1.1.1"}, SkipReason.FOR_PROCESSING),
        ({"NumberOfFrames": 12}, SkipReason.MULTI_FRAME),
        ({"PhotometricInterpretation": "RGB", "SamplesPerPixel": 3}, SkipReason.NOT_GRAYSCALE),
        ({"PhotometricInterpretation": "YBR_FULL_422"}, SkipReason.NOT_GRAYSCALE),
        ({"BodyPartExamined": "HAND"}, SkipReason.BODY_PART),
        ({"BodyPartExamined": "SKULL"}, SkipReason.BODY_PART),
        ({"BodyPartExamined": "PECHO_RARO"}, SkipReason.BODY_PART),
        ({"ViewPosition": "LL"}, SkipReason.VIEW),
        ({"ViewPosition": "RL"}, SkipReason.VIEW),
        ({"ViewPosition": "LATERAL"}, SkipReason.VIEW),
        ({"ViewPosition": "", "SeriesDescription": "CHEST LATERAL"}, SkipReason.VIEW),
    ],
)
def test_each_rule_skips_with_its_reason(chest_pa, changes, reason):
    for keyword, value in changes.items():
        setattr(chest_pa, keyword, value)
    verdict = gate.evaluate(chest_pa)
    assert (verdict.accepted, verdict.reason) == (False, reason), verdict.detail
    assert verdict.detail


@pytest.mark.parametrize("spelling", ["CHEST", "THORAX", "TORAX", "TÓRAX", " chest ", "Tórax"])
def test_body_part_goes_through_the_lakes_seed(chest_pa, spelling):
    chest_pa.BodyPartExamined = spelling
    assert gate.evaluate(chest_pa).accepted


def test_the_gate_reads_the_dbt_seed_itself():
    with open(dbt_project_dir() / "seeds" / "body_part_taxonomy.csv", encoding="utf-8") as handle:
        seed = {row["spelling"]: row["body_part"] for row in csv.DictReader(handle)}
    assert gate.lake_taxonomy().mapping == seed
    assert {spelling for spelling, part in seed.items() if part == "Chest"} >= {"chest", "thorax", "torax", "tórax"}


def test_flags_widen_and_narrow_the_gate(chest_pa):
    chest_pa.ViewPosition = "LL"
    widened = gate.evaluate(chest_pa, GatePolicy(allow_lateral=True))
    assert widened.accepted and widened.flags == (GateFlag.LATERAL_ALLOWED,)
    del chest_pa.ViewPosition
    del chest_pa.BodyPartExamined
    assert gate.evaluate(chest_pa).accepted
    assert gate.evaluate(chest_pa, GatePolicy(require_body_part=True)).reason == SkipReason.BODY_PART_MISSING
    assert gate.evaluate(chest_pa, GatePolicy(require_view=True)).reason == SkipReason.VIEW_MISSING
    assert GatePolicy(allow_lateral=True).to_dict()["allowed_views"] == ["AP", "LAT", "LATERAL", "LL", "PA", "RL"]


def test_orthanc_simplified_tags_are_read_like_a_dataset():
    tags = {
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.1",
        "Modality": "CR",
        "Rows": "2048",
        "Columns": "2048",
        "PhotometricInterpretation": "MONOCHROME1",
        "BodyPartExamined": "TORAX",
        "ViewPosition": "AP",
        "PatientSpeciesCodeSequence": [{"CodeValue": "337915000", "CodeMeaning": "Homo sapiens"}],
    }
    assert gate.evaluate(tags).accepted
    tags["PatientSpeciesCodeSequence"] = [{"CodeValue": "448771007", "CodeMeaning": "Canis lupus familiaris"}]
    assert gate.evaluate(tags).reason == SkipReason.NON_HUMAN
