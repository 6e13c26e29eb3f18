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
    assert nccid.accepted  # PatientAge '81' has no unit (not a valid AS): the age is unknown, not guessed
    assert nccid.flags == (GateFlag.BODY_PART_ABSENT, GateFlag.VIEW_ABSENT, GateFlag.AGE_ABSENT)


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


# --- issue 17's probes: each was classified with at most a flag ----------------------------


def _code_item(value: str, scheme: str, meaning: str) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


@pytest.fixture
def nccid_dx(shared_dicom_dir):
    """A real DX without BodyPartExamined or ViewPosition (accepted, flagged, as it comes)."""
    header = pydicom.dcmread(shared_dicom_dir / NCCID, stop_before_pixels=True)
    assert "BodyPartExamined" not in header and not header.get("ViewPosition")
    return header


def test_a_hand_named_only_in_the_study_description_is_skipped(nccid_dx):
    nccid_dx.StudyDescription = "XR HAND LEFT 3 VIEWS"
    verdict = gate.evaluate(nccid_dx)
    assert (verdict.reason, verdict.accepted) == (SkipReason.BODY_PART, False)
    assert "StudyDescription names Hand" in verdict.detail
    for text in ("XR CHEST PA", "CXR", "THORAX 1 VIEW", ""):  # chest words, or nothing said: accepted
        nccid_dx.StudyDescription = text
        assert gate.evaluate(nccid_dx).accepted, text
    nccid_dx.StudyDescription, nccid_dx.ProtocolName = "", "Upper Extremity 2V"
    assert gate.evaluate(nccid_dx).reason == SkipReason.BODY_PART


def test_anatomic_region_sequence_decides_when_body_part_is_absent(nccid_dx):
    nccid_dx.AnatomicRegionSequence = [_code_item("818981001", "SCT", "Abdomen")]
    verdict = gate.evaluate(nccid_dx)
    assert verdict.reason == SkipReason.BODY_PART and "Abdomen" in verdict.detail
    nccid_dx.AnatomicRegionSequence = [_code_item("816094009", "SCT", "Chest")]
    chest = gate.evaluate(nccid_dx)
    assert chest.accepted and GateFlag.BODY_PART_ABSENT not in chest.flags
    nccid_dx.AnatomicRegionSequence = [_code_item("T-D3000", "SRT", "Chest")]  # the older SNOMED-RT code
    assert gate.evaluate(nccid_dx).accepted


def test_view_code_sequence_decides_when_view_position_is_empty(nccid_dx):
    nccid_dx.ViewPosition = ""
    nccid_dx.ViewCodeSequence = [_code_item("399173006", "SCT", "left lateral")]
    verdict = gate.evaluate(nccid_dx)
    assert verdict.reason == SkipReason.VIEW and "left lateral" in verdict.detail
    assert gate.evaluate(nccid_dx, GatePolicy(allow_lateral=True)).accepted
    nccid_dx.ViewCodeSequence = [_code_item("399182000", "SCT", "oblique")]
    assert gate.evaluate(nccid_dx, GatePolicy(allow_lateral=True)).reason == SkipReason.VIEW
    nccid_dx.ViewCodeSequence = [_code_item("272479007", "SCT", "postero-anterior")]
    frontal = gate.evaluate(nccid_dx)
    assert frontal.accepted and GateFlag.VIEW_ABSENT not in frontal.flags


def test_non_frontal_words_in_descriptions_skip_but_a_study_of_pa_and_lateral_does_not(nccid_dx):
    nccid_dx.SeriesDescription = "CHEST LEFT DECUBITUS"
    assert gate.evaluate(nccid_dx).reason == SkipReason.VIEW
    nccid_dx.SeriesDescription = ""
    nccid_dx.StudyDescription = "XR CHEST LATERAL ONLY"
    assert gate.evaluate(nccid_dx).reason == SkipReason.VIEW
    nccid_dx.StudyDescription = "XR CHEST PA AND LATERAL"  # this image may be the PA one: accepted, flagged
    verdict = gate.evaluate(nccid_dx)
    assert verdict.accepted and GateFlag.VIEW_ABSENT in verdict.flags


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [
        ({"PatientAge": "003M"}, False),  # issue 17: a 3-month-old was classified
        ({"PatientAge": "010D"}, False),
        ({"PatientAge": "006W"}, False),
        ({"PatientAge": "017Y"}, False),
        ({"PatientAge": "018Y"}, True),
        ({"PatientAge": "064Y"}, True),
        ({"PatientBirthDate": "20260101", "StudyDate": "20260401"}, False),  # no PatientAge: dates decide
        ({"PatientBirthDate": "19500101", "StudyDate": "20260401"}, True),
    ],
)
def test_age_policy_skips_children_by_default(chest_pa, changes, accepted):
    for keyword in ("PatientAge", "PatientBirthDate"):
        if keyword in chest_pa:
            del chest_pa[keyword]
    for keyword, value in changes.items():
        setattr(chest_pa, keyword, value)
    verdict = gate.evaluate(chest_pa)
    assert verdict.accepted is accepted, verdict
    if not accepted:
        assert verdict.reason == SkipReason.AGE and "under 18 years" in verdict.detail
        assert gate.evaluate(chest_pa, GatePolicy(min_age_years=0)).accepted  # no limit
        assert gate.evaluate(chest_pa, GatePolicy(min_age_years=0.1)).accepted is (
            gate.patient_age_years(chest_pa) >= 0.1
        )


def test_unknown_age_is_accepted_flagged_and_the_policy_is_recorded(chest_pa):
    del chest_pa.PatientBirthDate
    verdict = gate.evaluate(chest_pa)
    assert verdict.accepted and GateFlag.AGE_ABSENT in verdict.flags
    assert GatePolicy().to_dict()["min_age_years"] == 18.0
    assert GatePolicy(min_age_years=0).to_dict()["min_age_years"] == 0


def test_orthanc_simplified_tags_carry_the_sequences_too():
    tags = {
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.1.1",
        "Modality": "DX",
        "Rows": "2048",
        "Columns": "2048",
        "PhotometricInterpretation": "MONOCHROME2",
        "PatientAge": "045Y",
        "AnatomicRegionSequence": [
            {"CodeValue": "818981001", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Abdomen"}
        ],
    }
    assert gate.evaluate(tags).reason == SkipReason.BODY_PART
    tags["AnatomicRegionSequence"] = [
        {"CodeValue": "816094009", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Chest"}
    ]
    tags["ViewCodeSequence"] = [
        {"CodeValue": "399198007", "CodingSchemeDesignator": "SCT", "CodeMeaning": "right lateral"}
    ]
    assert gate.evaluate(tags).reason == SkipReason.VIEW
