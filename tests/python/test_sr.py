"""The TID 1500 SR: valid per dciodvfy, right patient/study, deterministic UIDs, readable back."""

from __future__ import annotations

import io
import re
from pathlib import Path

import highdicom as hd
import pytest

from medlake.pacs import sr_builder
from medlake.pacs.inference import read_dataset
from medlake.pacs.weights import ModelIdentity

pytestmark = pytest.mark.shared

PATHOLOGIES = (
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural_Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
)
UNTRAINED = ModelIdentity("densenet121-res224-all", "ab" * 32, False, None, "1.5.7", "2.14.1")
TRAINED = ModelIdentity("densenet121-res224-all", "56" * 32, True, "official.pt", "1.5.7", "2.14.1")
UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
NO_META = "edge_cases/fo-dicom__CR-MONO1-10-chest.dcm"


def findings(first_positive: int = 3) -> list[sr_builder.Finding]:
    # Scores spread over [0, 1): the first `first_positive` are above the 0.5 operating point.
    return [
        sr_builder.Finding(
            pathology=name,
            score=0.9 - 0.05 * i if i < first_positive else 0.4 - 0.02 * i,
            threshold=0.5,
            operating_point=0.05,
            is_positive=i < first_positive,
        )
        for i, name in enumerate(PATHOLOGIES)
    ]


def shared_files(shared_dicom_dir: Path) -> list[Path]:
    return sorted(shared_dicom_dir.rglob("*.dcm"))


def test_pathology_labels_match_torchxrayvision():
    pytest.importorskip("torchxrayvision")
    from medlake.pacs import inference

    assert inference.pathologies() == PATHOLOGIES
    assert set(sr_builder.FINDING_CONCEPTS) == set(PATHOLOGIES)


def test_every_shared_file_gets_a_valid_sr(shared_dicom_dir, tmp_path):
    for path in shared_files(shared_dicom_dir):
        source = read_dataset(path, stop_before_pixels=True)
        built = sr_builder.build_sr(source, findings(), UNTRAINED)
        out = tmp_path / f"{path.stem}.sr.dcm"
        out.write_bytes(built.data)

        report = sr_builder.validate(out)
        assert report.errors == (), f"{path.name}: {report.errors}"

        sr = hd.sr.srread(out)
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
        assert sr.SOPInstanceUID == built.sop_instance_uid != source.SOPInstanceUID
        # Same patient and study as the image, in a series of its own.
        assert sr.PatientID == source.get("PatientID", "")
        assert str(sr.PatientName) == str(source.get("PatientName", ""))
        assert sr.get("PatientBirthDate", "") == source.get("PatientBirthDate", "")
        assert sr.StudyInstanceUID == source.StudyInstanceUID
        assert sr.SeriesInstanceUID == built.series_instance_uid != source.SeriesInstanceUID
        assert sr.Modality == "SR"
        # Evidence: the image is the current requested procedure's evidence...
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
        assert evidence.StudyInstanceUID == source.StudyInstanceUID
        refs = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence
        assert [r.ReferencedSOPInstanceUID for r in refs] == [source.SOPInstanceUID]
        # ...and the source of each of the 18 measurement groups.
        groups = sr.content.get_image_measurement_groups()
        assert len(groups) == 18
        for group, finding in zip(groups, findings(), strict=True):
            assert group.finding_type == sr_builder.FINDING_CONCEPTS[finding.pathology]
            assert [i.referenced_sop_instance_uid for i in group.source_images] == [source.SOPInstanceUID]
            (score,) = group.get_measurements(name=sr_builder.SCORE_CONCEPT)
            assert score.value == pytest.approx(round(finding.score, 6))
            assert score.unit == sr_builder.NO_UNITS
            (evaluation,) = group.get_qualitative_evaluations()
            assert evaluation.value == (sr_builder.PRESENT if finding.is_positive else sr_builder.ABSENT)


def test_untrained_weights_are_named_in_the_sr(shared_dicom_dir):
    source = read_dataset(shared_files(shared_dicom_dir)[0], stop_before_pixels=True)
    sr = hd.sr.srread(io.BytesIO(sr_builder.build_sr(source, findings(), UNTRAINED).data))
    text = " | ".join(str(e.value) for e in sr.iterall() if e.keyword == "TextValue")
    assert "UNTRAINED random weights - not for clinical use" in text
    assert UNTRAINED.weights_sha256 in text
    assert sr.SeriesDescription.startswith("UNTRAINED")
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.VerificationFlag == "UNVERIFIED"
    trained = hd.sr.srread(io.BytesIO(sr_builder.build_sr(source, findings(), TRAINED).data))
    trained_text = " | ".join(str(e.value) for e in trained.iterall() if e.keyword == "TextValue")
    assert "TorchXRayVision densenet121-res224-all" in trained_text
    assert "UNTRAINED" not in trained_text + trained.SeriesDescription


def test_uids_are_deterministic_valid_and_kept_apart(shared_dicom_dir):
    chest = shared_dicom_dir / "chest"
    uncr = read_dataset(chest / "pydicom-data__RG1_UNCR.dcm", stop_before_pixels=True)
    j2ki = read_dataset(chest / "pydicom-data__RG1_J2KI.dcm", stop_before_pixels=True)
    first = sr_builder.build_sr(uncr, findings(), UNTRAINED)
    again = sr_builder.build_sr(uncr, findings(), UNTRAINED)
    assert first.data == again.data  # byte-identical: no wall clock in the SR
    # Two images of one series: one SR series for the study, one SR instance per image.
    other = sr_builder.build_sr(j2ki, findings(), UNTRAINED)
    assert other.series_instance_uid == first.series_instance_uid
    assert other.sop_instance_uid != first.sop_instance_uid
    # Another model is another SR.
    trained = sr_builder.build_sr(uncr, findings(), TRAINED)
    assert {trained.sop_instance_uid, trained.series_instance_uid}.isdisjoint(
        {first.sop_instance_uid, first.series_instance_uid}
    )
    for uid in (first.sop_instance_uid, first.series_instance_uid, other.sop_instance_uid, trained.sop_instance_uid):
        assert uid.startswith("2.25.") and len(uid) <= 64 and UID.match(uid)


def test_image_without_patient_id_gets_an_sr_with_empty_patient_id(shared_dicom_dir, tmp_path):
    source = read_dataset(shared_dicom_dir / NO_META, stop_before_pixels=True)
    assert "PatientID" not in source
    built = sr_builder.build_sr(source, findings(), UNTRAINED)
    out = tmp_path / "no_patient_id.sr.dcm"
    out.write_bytes(built.data)
    sr = hd.sr.srread(out)
    assert "PatientID" in sr and sr.PatientID == ""  # type 2: present, empty
    assert built.patient_id == ""
    assert sr_builder.validate(out).errors == ()


def test_invalid_copied_values_are_dropped_not_guessed(shared_dicom_dir):
    # The NCCID file says PatientAge "81": invalid AS, so the SR leaves the (type 3) attribute out.
    path = next(p for p in shared_files(shared_dicom_dir) if p.name.startswith("nccid"))
    source = read_dataset(path, stop_before_pixels=True)
    assert source.PatientAge == "81"
    sr = hd.sr.srread(io.BytesIO(sr_builder.build_sr(source, findings(), UNTRAINED).data))
    assert "PatientAge" not in sr


def test_reference_srs_from_earlier_solutions_fail_validation_where_ours_pass(reference_sr_dir):
    for path in sorted(reference_sr_dir.glob("*.dcm")):
        report = sr_builder.validate(path)
        assert report.errors, f"{path.name} unexpectedly valid"
