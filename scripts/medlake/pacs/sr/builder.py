"""One DICOM SR per classified image: TID 1500 Measurement Report in a Comprehensive 3D SR.

Document layout (highdicom 0.28)::

    Imaging Measurement Report (DCM 126000, TID 1500)
      language, observer = device (the model), procedure = Plain chest X-ray (SCT 399208008)
      Image Library: the source image
      Imaging Measurements
        Measurement Group (TID 1501) x 18, one per TorchXRayVision pathology:
          tracking identifier + UID, Finding = the pathology (sr_codes.FINDING_CONCEPTS),
          finding site Lung where the code alone does not say it, algorithm (name, version,
          weights digest), Score (SCT 246262008) = calibrated model output, unit UCUM "1",
          qualitative evaluations: <pathology> = Present/Absent (SCT 52101004 / 272519000) and
          AI model weights status = untrained / official (coded, 99MEDLAKE)

Header: patient and study come from the source (``evidence=[source]``), so the SR lands under
the source's Orthanc patient and study. Absent type-2 patient/study attributes stay
present-but-empty. When and by whom (IHE AI Results):

* Content, Series and Instance Creation Date/Time are ``run_at``, when the model ran, stated in
  the source's Timezone Offset From UTC (kept, since it also qualifies the copied study date/time),
  or in UTC (``+0000``) when the source has none (:func:`sr_clock`); the caller passes ``run_at``,
  so the function is pure;
* Series Number is one per model identity (:func:`sr_series_number`);
* Contributing Equipment names the algorithm (Manufacturer, Model Name, Software Versions,
  Device UID, weights digest as serial number, purpose Processing Equipment DCM 109102,
  contribution date/time = ``run_at``), beside the source's acquisition equipment and highdicom;
* Series Description says "not for diagnostic use" (and starts with UNTRAINED when it is);
* InstanceNumber is given by the caller (:mod:`medlake.pacs.sr.numbering` counts within the SR
  series); every LO value is designed to fit 64 characters, never cut.

Determinism: Series and SOP Instance UIDs are ``2.25.<128 bits of sha256>`` of the source
SOP Instance UID (study for the series) and the model identity, so re-running the same model
on the same image rebuilds the same SR instance and Orthanc stores nothing new; with the same
``run_at`` and ``instance_number`` the bytes are identical too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import warnings
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from io import BytesIO

import highdicom as hd
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.valuerep import validate_value

from medlake import __version__
from medlake.errors import DicomError
from medlake.pacs.model.weights import ModelIdentity
from medlake.pacs.sr.codes import (
    ABSENT,
    FINDING_CONCEPTS,
    FINDING_SITES,
    NO_UNITS,
    PRESENT,
    PRIVATE_CODING_SCHEME,
    PRIVATE_SCHEME,
    PROCEDURE_CHEST_XRAY,
    PROCESSING_EQUIPMENT,
    SCORE_CONCEPT,
    WEIGHTS_STATUS,
    weights_status,
)
from medlake.pacs.sr.validation import ValidationReport, validate

__all__ = [  # the vocabulary is re-exported: callers and tests use it from here
    "ABSENT",
    "FINDING_CONCEPTS",
    "NO_UNITS",
    "PRESENT",
    "PRIVATE_SCHEME",
    "SCORE_CONCEPT",
    "BuiltSr",
    "Finding",
    "ValidationReport",
    "build_sr",
    "sr_instance_uid",
    "sr_series_uid",
    "validate",
]

_UTC_OFFSET = re.compile(r"^([+-])(\d{2})(\d{2})$")
SR_MANUFACTURER = "medlake"
ALGORITHM_MANUFACTURER = "TorchXRayVision (mlmed.org)"
NOT_FOR_DIAGNOSIS = "not for diagnostic use"
_LO_MAX = 64

# Type 2 attributes highdicom reads from the evidence by attribute access: keep them present, maybe empty.
_TYPE2_FROM_EVIDENCE = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_VALID_SEX = {"M", "F", "O"}
_TYPE3_VALIDATED = ("PatientAge", "PatientSize", "PatientWeight")


def uid_from(*parts: str) -> str:
    """A UUID-derived UID (``2.25.<int>``, PS3.5 B.2) from 128 bits of sha256 of ``parts``."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def sr_series_uid(study_instance_uid: str, model: ModelIdentity) -> str:
    return uid_from("medlake-sr-series", study_instance_uid, model.uid_key)


def sr_instance_uid(source_sop_instance_uid: str, model: ModelIdentity) -> str:
    return uid_from("medlake-sr-instance", source_sop_instance_uid, model.uid_key)


@dataclass(frozen=True)
class Finding:
    """One pathology's result: ``score`` is calibrated so ``threshold`` (0.5) is the operating point."""

    pathology: str
    score: float
    threshold: float
    operating_point: float
    is_positive: bool

    def to_dict(self) -> dict:
        concept = FINDING_CONCEPTS.get(self.pathology)
        return {
            "pathology": self.pathology,
            "score": round(self.score, 6),
            "threshold": self.threshold,
            "operating_point": self.operating_point,
            "is_positive": self.is_positive,
            "code": None
            if concept is None
            else {"value": concept.value, "scheme": concept.scheme_designator, "meaning": concept.meaning},
        }


@dataclass(frozen=True)
class BuiltSr:
    """An SR ready to store: its UIDs and its DICOM file bytes."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    referenced_sop_instance_uid: str
    data: bytes


def evidence(source: Dataset) -> Dataset:
    """A header-only copy of the source with the type-2 attributes highdicom reads made present."""
    evidence = Dataset()
    for element in source:
        if element.tag.group != 0x7FE0:  # no pixel data: the SR only references the image
            evidence.add(deepcopy(element))
    if hasattr(source, "file_meta"):
        evidence.file_meta = deepcopy(source.file_meta)
    for keyword in _TYPE2_FROM_EVIDENCE:
        if keyword not in evidence or evidence[keyword].value is None:
            setattr(evidence, keyword, "")
    if str(evidence.PatientSex).upper() not in _VALID_SEX:
        evidence.PatientSex = ""
    return evidence


def describable_in_image_library(image: Dataset) -> bool:
    """Whether highdicom can write the (optional) Image Library entry for this image.

    For projection radiography it needs Patient Orientation and Imager Pixel Spacing, which
    many real files lack (secondary captures, old CRs); without them the library is left out
    and the image is still referenced by every measurement group and the evidence sequence.
    """
    try:
        hd.sr.ImageLibraryEntryDescriptors(image)
    except (AttributeError, IndexError, ValueError, TypeError):
        return False
    return True


def _lo(value: str, what: str) -> str:
    """A Long String value, checked: the fields are designed to fit, so an overflow is a bug, not a cut."""
    if len(value) > _LO_MAX:
        raise DicomError(f"{what} is {len(value)} characters, over the 64 of a DICOM LO: {value!r}")
    return value


def _series_description(model: ModelIdentity) -> str:
    if model.weights_trained:
        return _lo(f"AI chest X-ray findings - {NOT_FOR_DIAGNOSIS}", "SeriesDescription")
    return _lo(f"UNTRAINED AI demo - {NOT_FOR_DIAGNOSIS} (TorchXRayVision)", "SeriesDescription")


def _model_name(model: ModelIdentity) -> str:
    """The algorithm as a short name (LO): the weights key, and UNTRAINED when it is."""
    return _lo(f"{model.weights_key}{'' if model.weights_trained else ' UNTRAINED'}", "model name")


def device_uid(model: ModelIdentity) -> str:
    """One UID per model identity: the observer device and the contributing equipment item."""
    return uid_from("medlake-device", model.uid_key)


def _algorithm(model: ModelIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=model.name,
        version=model.version,
        parameters=[
            f"weights {model.weights_key} sha256 {model.weights_sha256}",
            f"weights trained: {'yes' if model.weights_trained else 'NO (random init, seed 0)'}",
            "score: op_norm-calibrated output; finding present when score >= 0.5 (the model's operating point)",
        ],
    )


def _algorithm_equipment(model: ModelIdentity, run_at: dt.datetime) -> hd.ContributingEquipment:
    """IHE AI Results: the algorithm as contributing equipment (who made this content, and when)."""
    trained = "official weights (SHA-256 verified)" if model.weights_trained else "UNTRAINED random weights (seed 0)"
    equipment = hd.ContributingEquipment(
        manufacturer=_lo(ALGORITHM_MANUFACTURER, "Manufacturer"),
        purpose_of_reference=PROCESSING_EQUIPMENT,
        manufacturer_model_name=_model_name(model),
        software_versions=[
            _lo(model.version, "SoftwareVersions"),
            _lo(f"torch {model.torch_version}", "SoftwareVersions"),
            _lo(f"medlake {__version__}", "SoftwareVersions"),
        ],
        device_serial_number=_lo(model.weights_sha256, "DeviceSerialNumber"),
        contribution_datetime=run_at,
        contribution_description=(
            f"AI classification of the referenced chest X-ray by {model.name}, {trained}; "
            f"weights sha256 {model.weights_sha256}. Research output, {NOT_FOR_DIAGNOSIS}."
        ),
    )
    equipment.DeviceUID = device_uid(model)
    return equipment


def utc(run_at: dt.datetime) -> dt.datetime:
    if run_at.tzinfo is None:
        raise DicomError("run_at must be timezone-aware (UTC): a naive time would be read as local time")
    return run_at.astimezone(dt.UTC).replace(microsecond=0)


def tracking_uid(source: Dataset, model: ModelIdentity, pathology: str) -> str:
    return uid_from("medlake-tracking", source.SOPInstanceUID, model.uid_key, pathology)


def _measurement_group(
    source: Dataset, evidence: Dataset, finding: Finding, model: ModelIdentity, algorithm: hd.sr.AlgorithmIdentification
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    concept = FINDING_CONCEPTS[finding.pathology]
    site = FINDING_SITES.get(finding.pathology)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid(source, model, finding.pathology),
            identifier=f"{finding.pathology} (TorchXRayVision)",
        ),
        finding_type=concept,
        finding_sites=[hd.sr.FindingSite(anatomic_location=site)] if site is not None else None,
        algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(name=SCORE_CONCEPT, value=round(finding.score, 6), unit=NO_UNITS)],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=concept, value=PRESENT if finding.is_positive else ABSENT),
            hd.sr.QualitativeEvaluation(name=WEIGHTS_STATUS, value=weights_status(model.weights_trained)),
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(evidence)],
    )


def build_document(
    source: Dataset,
    findings: Sequence[Finding],
    model: ModelIdentity,
    *,
    run_at: dt.datetime,
    instance_number: int,
) -> hd.sr.Comprehensive3DSR:
    """The SR document for one image, built by highdicom (not encoded): the reference every SR equals."""
    run_at = utc(run_at)
    if instance_number < 1:
        raise DicomError(f"instance_number must be >= 1, got {instance_number}")
    header = evidence(source)
    algorithm = _algorithm(model)
    groups = [_measurement_group(source, header, finding, model, algorithm) for finding in findings]
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(model),
            name=_lo(f"TorchXRayVision {_model_name(model)}", "device observer name"),
            manufacturer_name=ALGORITHM_MANUFACTURER,
            model_name=_model_name(model),
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE_CHEST_XRAY,
        imaging_measurements=groups,
        referenced_images=[header] if describable_in_image_library(header) else None,
    )
    series_uid = sr_series_uid(source.StudyInstanceUID, model)
    sop_uid = sr_instance_uid(source.SOPInstanceUID, model)
    with warnings.catch_warnings():
        # highdicom warns when a copied Patient's Name has a single component ("Anonymized"):
        # the source's value is kept as it is, so the warning is noise on every such image.
        warnings.simplefilter("ignore", UserWarning)
        built = document(header, report[0], series_uid, sop_uid, instance_number, run_at, model)
    finish_document(built, run_at, header)
    return built


def finish_document(built: Dataset, run_at: dt.datetime, source: Dataset) -> None:
    """What medlake sets after highdicom: the run's times, no invalid optional patient values."""
    _stamp_run_time(built, run_at, source)
    _drop_invalid_optional_values(built)


def build_sr(
    source: Dataset,
    findings: Sequence[Finding],
    model: ModelIdentity,
    *,
    run_at: dt.datetime,
    instance_number: int,
) -> BuiltSr:
    """Build and encode the SR for one image. Raises :class:`DicomError` with the reason on failure.

    ``run_at`` is when the model ran (timezone-aware; stored in UTC); ``instance_number`` the SR's
    number within its series (:class:`medlake.pacs.sr.numbering.SrInstanceNumbers`). A pure
    function of its arguments (picklable in, bytes out). The loop builds the same SR faster from a
    per-model template (:mod:`medlake.pacs.sr.template`); this is the reference it is tested against.
    """
    try:
        built = build_document(source, findings, model, run_at=run_at, instance_number=instance_number)
        buffer = BytesIO()
        built.save_as(buffer, enforce_file_format=True)
    except DicomError:
        raise
    except Exception as exc:
        raise DicomError(f"cannot build SR for {source.get('SOPInstanceUID')}: {type(exc).__name__}: {exc}") from exc
    return BuiltSr(
        sop_instance_uid=str(built.SOPInstanceUID),
        series_instance_uid=str(built.SeriesInstanceUID),
        study_instance_uid=str(source.StudyInstanceUID),
        patient_id=str(built.PatientID),
        referenced_sop_instance_uid=str(source.SOPInstanceUID),
        data=buffer.getvalue(),
    )


def _drop_invalid_optional_values(document: Dataset) -> None:
    """Drop optional (type 3) patient attributes whose copied value is invalid, e.g. Patient's Age "81".

    The value is not guessed into shape ("81" could be years or a typo): the SR simply omits it,
    and the source image still carries what it carried.
    """
    for keyword in _TYPE3_VALIDATED:
        if keyword in document:
            element = document[keyword]
            try:
                validate_value(element.VR, element.value, config.RAISE)
            except ValueError:
                del document[keyword]


def document(
    evidence: Dataset,
    content: Dataset,
    series_uid: str,
    sop_uid: str,
    instance_number: int,
    run_at: dt.datetime,
    model: ModelIdentity,
) -> hd.sr.Comprehensive3DSR:
    return hd.sr.Comprehensive3DSR(
        evidence=[evidence],
        content=content,
        series_instance_uid=series_uid,
        series_number=sr_series_number(model),
        sop_instance_uid=sop_uid,
        instance_number=instance_number,
        manufacturer=SR_MANUFACTURER,
        is_complete=True,
        is_final=False,
        series_description=_series_description(model),
        manufacturer_model_name="medlake pacs",
        software_versions=f"medlake {__version__}",
        content_date=sr_clock(run_at, evidence).strftime("%Y%m%d"),
        content_time=sr_clock(run_at, evidence).strftime("%H%M%S"),
        coding_schemes=[PRIVATE_CODING_SCHEME],
        contributing_equipment=[_algorithm_equipment(model, run_at)],
    )


def source_utc_offset(source: Dataset) -> dt.timedelta | None:
    """The source's Timezone Offset From UTC ("+0100", "-0530") as a timedelta; None if absent or invalid."""
    match = _UTC_OFFSET.match(str(source.get("TimezoneOffsetFromUTC") or "").strip())
    if match is None:
        return None
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3))
    if hours > 14 or minutes > 59:
        return None
    offset = dt.timedelta(hours=hours, minutes=minutes)
    return -offset if sign == "-" else offset


def sr_clock(run_at: dt.datetime, source: Dataset) -> dt.datetime:
    """``run_at`` as the SR's own dates and times state it: in the source's offset, else in UTC.

    Timezone Offset From UTC applies to every date and time of a dataset, the study's copied from
    the source included: so the SR keeps the source's offset (and its study date/time as they are)
    and states when the model ran in that same offset. A source without one leaves its study
    times in an unknown local time; the SR then states its own in UTC (+0000). Date-times (DT, e.g.
    Contribution DateTime) carry their own offset and stay in UTC.
    """
    offset = source_utc_offset(source)
    return run_at.astimezone(dt.UTC if offset is None else dt.timezone(offset))


def _offset_text(moment: dt.datetime) -> str:
    minutes = int(moment.utcoffset().total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def sr_series_number(model: ModelIdentity) -> int:
    """One Series Number per model identity, 990000-999999 (after any acquisition series).

    Two models' SRs in one study were two series both numbered 9901. The number is derived from
    the identity (not counted), so re-runs keep it and the SR's bytes stay a function of its inputs;
    two identities share a number with probability 1/10,000, and their series UIDs still differ.
    """
    digest = hashlib.sha256(f"medlake-sr-series-number|{model.uid_key}".encode()).digest()
    return 990000 + int.from_bytes(digest[:8], "big") % 10000


def _stamp_run_time(document: Dataset, run_at: dt.datetime, source: Dataset) -> None:
    """Series and instance creation date/time = the run, so the SR's bytes follow its inputs only."""
    local = sr_clock(run_at, source)
    date, time = local.strftime("%Y%m%d"), local.strftime("%H%M%S")
    document.SeriesDate, document.SeriesTime = date, time
    document.InstanceCreationDate, document.InstanceCreationTime = date, time
    document.TimezoneOffsetFromUTC = _offset_text(local)
    for item in document.get("ContributingEquipmentSequence", []):
        if item.get("Manufacturer") == "Highdicom open-source contributors":  # stamped with the wall clock
            item.ContributionDateTime = run_at.strftime("%Y%m%d%H%M%S+0000")
