"""The TID 1500 SR: valid per dciodvfy, right patient/study, deterministic UIDs, readable back."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import highdicom as hd
import pytest

from medlake import __version__ as medlake_version
from medlake.errors import DicomError
from medlake.pacs.model.inference import read_dataset
from medlake.pacs.model.weights import ModelIdentity
from medlake.pacs.sr import builder as sr_builder
from medlake.pacs.sr import codes as sr_codes
from medlake.pacs.sr.numbering import SrInstanceNumbers, orthanc_series_lookup

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
# When the model ran, as the loop passes it: a non-UTC offset proves the SR stores UTC.
RUN_AT = dt.datetime(2026, 11, 30, 4, 5, 6, 789, tzinfo=dt.timezone(dt.timedelta(hours=2)))
RUN_AT_UTC = ("20261130", "020506")
LO_MAX = 64


def build(source, model=UNTRAINED, *, run_at=RUN_AT, instance_number=1) -> sr_builder.BuiltSr:
    return sr_builder.build_sr(source, findings(), model, run_at=run_at, instance_number=instance_number)


def read_sr(built: sr_builder.BuiltSr):
    return hd.sr.srread(io.BytesIO(built.data))


def algorithm_equipment(sr):
    (item,) = [e for e in sr.ContributingEquipmentSequence if e.Manufacturer == sr_builder.ALGORITHM_MANUFACTURER]
    return item


def weights_status_values(sr) -> set:
    values = set()
    for group in sr.content.get_image_measurement_groups():
        for evaluation in group.get_qualitative_evaluations(name=sr_codes.WEIGHTS_STATUS):
            values.add(evaluation.value)
    return values


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
    from medlake.pacs.model import inference

    assert inference.pathologies() == PATHOLOGIES
    assert set(sr_builder.FINDING_CONCEPTS) == set(PATHOLOGIES)


def test_finding_codes_prefer_the_concepts_dicom_ps3_16_uses():
    """Codes DICOM's own tables (as shipped by pydicom) list keep their meaning; the rest are declared."""
    from pydicom.sr._concepts_dict import concepts

    in_ps3_16 = {
        name: concept
        for name, concept in sr_builder.FINDING_CONCEPTS.items()
        if any(concept.value in codes for codes in concepts.get(concept.scheme_designator, {}).values())
    }
    assert set(in_ps3_16) >= {"Pneumothorax", "Edema", "Effusion", "Nodule", "Mass", "Lung Lesion", "Infiltration"}
    assert sr_builder.FINDING_CONCEPTS["Lung Lesion"] == hd.sr.CodedConcept("52988006", "SCT", "Lesion")
    assert sr_codes.FINDING_SITES["Lung Lesion"] == sr_codes.FINDING_SITES["Lung Opacity"] == sr_codes.LUNG
    for concept in sr_builder.FINDING_CONCEPTS.values():
        assert concept.scheme_designator in {"SCT", "DCM", sr_builder.PRIVATE_SCHEME}
        assert len(concept.meaning) <= LO_MAX
    private = {n for n, c in sr_builder.FINDING_CONCEPTS.items() if c.scheme_designator == sr_builder.PRIVATE_SCHEME}
    assert private == {"Pleural_Thickening", "Hernia", "Enlarged Cardiomediastinum"}


def test_every_shared_file_gets_a_valid_sr(shared_dicom_dir, tmp_path):
    for path in shared_files(shared_dicom_dir):
        source = read_dataset(path, stop_before_pixels=True)
        built = build(source, instance_number=7)
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
            (evaluation,) = group.get_qualitative_evaluations(name=group.finding_type)
            assert evaluation.value == (sr_builder.PRESENT if finding.is_positive else sr_builder.ABSENT)
            sites = [site.value for site in group.finding_sites]
            assert sites == ([sr_codes.LUNG] if finding.pathology in sr_codes.FINDING_SITES else [])
        # When and who: the run's time (in the source's offset if it has one, else UTC), the algorithm
        # as contributing equipment, counted number.
        offset = source.get("TimezoneOffsetFromUTC")
        when = (
            RUN_AT_UTC
            if offset is None
            else tuple(sr_builder.sr_clock(RUN_AT, source).strftime("%Y%m%d %H%M%S").split())
        )
        assert (sr.ContentDate, sr.ContentTime) == when
        assert (sr.SeriesDate, sr.SeriesTime) == when
        assert (sr.InstanceCreationDate, sr.InstanceCreationTime) == when
        assert sr.TimezoneOffsetFromUTC == (offset or "+0000")
        assert sr.InstanceNumber == 7
        assert "not for diagnostic use" in sr.SeriesDescription
        equipment = algorithm_equipment(sr)
        assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"  # DCM Processing Equipment
        assert equipment.PurposeOfReferenceCodeSequence[0].CodingSchemeDesignator == "DCM"
        assert equipment.ManufacturerModelName == "densenet121-res224-all UNTRAINED"
        assert list(equipment.SoftwareVersions) == [
            "torchxrayvision 1.5.7",
            "torch 2.14.1",
            f"medlake {medlake_version}",
        ]
        assert equipment.DeviceUID == sr_builder.device_uid(UNTRAINED) and UID.match(equipment.DeviceUID)
        assert equipment.DeviceSerialNumber == UNTRAINED.weights_sha256
        assert equipment.ContributionDateTime == "".join(RUN_AT_UTC) + "+0000"
        purposes = [e.PurposeOfReferenceCodeSequence[0].CodeMeaning for e in sr.ContributingEquipmentSequence]
        assert purposes.count("Processing Equipment") == 2  # the algorithm and highdicom


def test_untrained_weights_are_coded_named_and_never_cut(shared_dicom_dir):
    source = read_dataset(shared_files(shared_dicom_dir)[0], stop_before_pixels=True)
    sr = read_sr(build(source))
    text = " | ".join(str(e.value) for e in sr.iterall() if e.keyword == "TextValue")
    assert "UNTRAINED random weights - not for clinical use" in text
    assert UNTRAINED.weights_sha256 in text
    assert sr.SeriesDescription == "UNTRAINED AI demo - not for diagnostic use (TorchXRayVision)"
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.VerificationFlag == "UNVERIFIED"
    # Coded, beside every finding's Present/Absent, not only in text.
    assert weights_status_values(sr) == {sr_codes.UNTRAINED_WEIGHTS}
    assert "UNTRAINED" in algorithm_equipment(sr).ContributionDescription
    # Every LO value that carries the marker holds it whole (the old device name was cut at 64).
    device_names = [str(e.value) for e in sr.iterall() if e.keyword == "TextValue" and "UNTRAINED" in str(e.value)]
    assert "TorchXRayVision densenet121-res224-all UNTRAINED" in device_names
    for element in sr.iterall():
        if element.VR == "LO" and element.value:
            assert all(len(str(v)) <= LO_MAX for v in (element.value if element.VM > 1 else [element.value]))

    trained = read_sr(build(source, TRAINED))
    trained_text = " | ".join(str(e.value) for e in trained.iterall() if e.keyword == "TextValue")
    assert "TorchXRayVision densenet121-res224-all" in trained_text
    assert "UNTRAINED" not in trained_text + trained.SeriesDescription
    assert trained.SeriesDescription == "AI chest X-ray findings - not for diagnostic use"
    assert weights_status_values(trained) == {sr_codes.OFFICIAL_WEIGHTS}
    assert algorithm_equipment(trained).ManufacturerModelName == "densenet121-res224-all"


def test_run_time_must_be_timezone_aware_and_numbers_positive(shared_dicom_dir):
    source = read_dataset(shared_files(shared_dicom_dir)[0], stop_before_pixels=True)
    with pytest.raises(DicomError, match="timezone-aware"):
        build(source, run_at=dt.datetime(2026, 11, 30, 4, 5, 6))
    with pytest.raises(DicomError, match="instance_number"):
        build(source, instance_number=0)


def test_uids_are_deterministic_valid_and_kept_apart(shared_dicom_dir):
    chest = shared_dicom_dir / "chest"
    uncr = read_dataset(chest / "pydicom-data__RG1_UNCR.dcm", stop_before_pixels=True)
    j2ki = read_dataset(chest / "pydicom-data__RG1_J2KI.dcm", stop_before_pixels=True)
    first = build(uncr)
    again = build(uncr)
    assert first.data == again.data  # byte-identical: no wall clock in the SR, only the run time given
    later = build(uncr, run_at=RUN_AT + dt.timedelta(days=1), instance_number=2)
    assert later.data != first.data  # another run: other times and number...
    assert (later.sop_instance_uid, later.series_instance_uid) == (first.sop_instance_uid, first.series_instance_uid)
    # Two images of one series: one SR series for the study, one SR instance per image.
    other = build(j2ki, instance_number=2)
    assert other.series_instance_uid == first.series_instance_uid
    assert other.sop_instance_uid != first.sop_instance_uid
    # Another model is another SR.
    trained = build(uncr, TRAINED)
    assert {trained.sop_instance_uid, trained.series_instance_uid}.isdisjoint(
        {first.sop_instance_uid, first.series_instance_uid}
    )
    for uid in (first.sop_instance_uid, first.series_instance_uid, other.sop_instance_uid, trained.sop_instance_uid):
        assert uid.startswith("2.25.") and len(uid) <= 64 and UID.match(uid)


def test_image_without_patient_id_gets_an_sr_with_empty_patient_id(shared_dicom_dir, tmp_path):
    source = read_dataset(shared_dicom_dir / NO_META, stop_before_pixels=True)
    assert "PatientID" not in source
    built = build(source)
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
    sr = read_sr(build(source))
    assert "PatientAge" not in sr


def test_reference_srs_from_earlier_solutions_fail_validation_where_ours_pass(reference_sr_dir):
    for path in sorted(reference_sr_dir.glob("*.dcm")):
        report = sr_builder.validate(path)
        assert report.errors, f"{path.name} unexpectedly valid"


def test_instance_numbers_continue_what_the_series_holds():
    held = {"series-a": {"sr-1": 1, "sr-2": 2}, "series-b": {}}
    asked: list[str] = []

    def lookup(series_uid: str) -> dict[str, int]:
        asked.append(series_uid)
        return held[series_uid]

    numbers = SrInstanceNumbers(lookup)
    assert numbers.number("series-a", "sr-2") == 2  # already stored: keeps its number (a re-run)
    assert numbers.number("series-a", "sr-3") == 3
    assert numbers.number("series-b", "sr-9") == 1
    assert numbers.number("series-a", "sr-4") == 4
    assert numbers.number("series-a", "sr-3") == 3  # stable within the run
    assert asked == ["series-a", "series-b"]  # one lookup per series


@pytest.mark.orthanc
def test_instance_numbers_come_from_the_srs_orthanc_holds(orthanc_server, shared_dicom_dir):
    chest = shared_dicom_dir / "chest"
    uncr = read_dataset(chest / "pydicom-data__RG1_UNCR.dcm", stop_before_pixels=True)
    j2ki = read_dataset(chest / "pydicom-data__RG1_J2KI.dcm", stop_before_pixels=True)
    with orthanc_server.client() as client:
        first = SrInstanceNumbers.from_orthanc(client)
        assert first.for_source(uncr, UNTRAINED) == 1  # a series Orthanc does not hold yet
        stored = build(uncr, instance_number=1)
        assert client.upload(stored.data, label="uncr SR").stored
        assert orthanc_series_lookup(client)(stored.series_instance_uid) == {stored.sop_instance_uid: 1}
        # A later run: the stored SR keeps 1, the study's other image gets 2.
        later = SrInstanceNumbers.from_orthanc(client)
        assert later.for_source(j2ki, UNTRAINED) == 2
        assert later.for_source(uncr, UNTRAINED) == 1


def test_source_timezone_offset_is_kept_and_the_sr_times_are_stated_in_it(shared_dicom_dir, tmp_path):
    """Issue 17: the SR said +0000 while its copied StudyDate/Time were a +0100 source's local time."""
    source = read_dataset(shared_files(shared_dicom_dir)[0], stop_before_pixels=True)
    source.TimezoneOffsetFromUTC = "+0100"
    source.StudyDate, source.StudyTime = "20261129", "233000"
    built = build(source)
    sr = read_sr(built)
    assert sr.TimezoneOffsetFromUTC == "+0100"
    assert (sr.StudyDate, sr.StudyTime) == ("20261129", "233000")  # the source's, untouched
    # RUN_AT is 02:05:06 UTC: 03:05:06 at +0100, for content, series and instance creation alike.
    assert (sr.ContentDate, sr.ContentTime) == ("20261130", "030506")
    assert (sr.SeriesDate, sr.SeriesTime) == (sr.InstanceCreationDate, sr.InstanceCreationTime) == sr_clock(sr)
    assert algorithm_equipment(sr).ContributionDateTime == "".join(RUN_AT_UTC) + "+0000"  # DT: its own offset
    west = source.copy()
    west.TimezoneOffsetFromUTC = "-0530"
    assert (read_sr(build(west)).ContentDate, read_sr(build(west)).ContentTime) == ("20261129", "203506")
    # An invalid offset is not trusted: UTC, said so.
    source.TimezoneOffsetFromUTC = "+9999"
    sr = read_sr(build(source))
    assert (sr.TimezoneOffsetFromUTC, sr.ContentDate, sr.ContentTime) == ("+0000", *RUN_AT_UTC)
    out = tmp_path / "tz.dcm"
    out.write_bytes(built.data)
    assert sr_builder.validate(out).ok


def sr_clock(sr) -> tuple[str, str]:
    return sr.ContentDate, sr.ContentTime


def test_each_model_identity_gets_its_own_series_number(shared_dicom_dir):
    """Issue 17: every model wrote SeriesNumber 9901, so two models' SR series shared one number."""
    source = read_dataset(shared_files(shared_dicom_dir)[0], stop_before_pixels=True)
    untrained, trained = read_sr(build(source, UNTRAINED)), read_sr(build(source, TRAINED))
    assert untrained.SeriesNumber != trained.SeriesNumber
    assert untrained.SeriesNumber == read_sr(build(source, UNTRAINED, instance_number=5)).SeriesNumber
    for sr in (untrained, trained):
        assert 990000 <= sr.SeriesNumber <= 999999
        assert sr.SeriesNumber == sr_builder.sr_series_number(UNTRAINED if sr is untrained else TRAINED)
