"""The intended-use gate: which DICOM instances the chest X-ray model may classify.

TorchXRayVision's ``densenet121-res224-all`` was trained on frontal (PA/AP) human chest
radiographs. Everything else (a lateral view, a CT slice, a hand, a raw *For Processing*
detector image, an RGB screenshot, a cine loop, an SR) would still get confident-looking
scores, so the gate decides **before any pixel is decoded**, from the header alone, with one
rule table (:data:`RULES`, in order; the first rule that fails names the skip reason):

======================  ==========================================================================
reason code             the instance is skipped when
======================  ==========================================================================
non_image               no pixel matrix (Rows/Columns) or a non-image SOP class/modality (SR, KO, PR,
                        encapsulated documents, RT, waveforms...); medlake's own SRs land here
modality                Modality is not CR or DX
for_processing          PresentationIntentType is FOR PROCESSING (or a *For Processing* SOP class)
multi_frame             NumberOfFrames > 1
not_grayscale           PhotometricInterpretation is not MONOCHROME1/2, or SamplesPerPixel != 1
non_human               PatientSpeciesDescription/-CodeSequence names a non-human species, or the
                        descriptions/institution carry a veterinary word (CANINE, FELINE, DOG, ...)
age                     the patient is younger than ``--min-age-years`` (default 18: the model's
                        training sets are adult chest films), from PatientAge or else PatientBirthDate
                        and the study date; unknown: accepted and flagged ``age_absent``
body_part               BodyPartExamined does not map to ``Chest`` through the lake's
                        ``body_part_taxonomy`` seed (``CHEST``, ``THORAX``, ``TORAX``, ``TÓRAX``);
                        absent: the AnatomicRegionSequence decides (SNOMED CT Chest/Thorax, or a
                        meaning the seed maps), else a body part the seed knows named in the
                        study/series/protocol description without a chest word (``XR HAND LEFT``)
                        skips; nothing said: accepted and flagged ``body_part_absent``
                        (``--require-body-part``: skipped as ``body_part_missing``)
view                    ViewPosition is not PA/AP (LL, RL, LATERAL, decubitus, oblique...); absent:
                        the ViewCodeSequence decides (CID 4010: postero-anterior, antero-posterior
                        or frontal pass; left/right lateral, oblique... skip), else a lateral,
                        oblique or decubitus named in the acquisition/series/protocol description
                        (or a study description naming only such views) still skips, otherwise
                        accepted and flagged ``view_absent`` (``--require-view``: skipped as
                        ``view_missing``); ``--allow-view lateral`` accepts laterals too
======================  ==========================================================================

Skips are not failures: the loop lands each one with its reason and counts it.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from medlake.vocab import GateDecision, GateFlag, SkipReason

CHEST = "Chest"
FRONTAL_VIEWS = frozenset({"PA", "AP"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT"})
IMAGE_MODALITIES = frozenset({"CR", "DX"})
GRAYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})
NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "DOC", "RTSTRUCT", "RTPLAN", "RTDOSE", "ECG", "REG", "SEG"})
# SOP class UID prefixes that never carry an image the model could read.
NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF/CDA/STL
    "1.2.840.10008.5.1.4.1.1.481.",  # radiotherapy
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, registration, segmentation
)
FOR_PROCESSING_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray - For Processing
        "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray - For Processing
    }
)
HUMAN_SPECIES = frozenset({"HUMAN", "HOMO SAPIENS", "337915000"})  # 337915000: SNOMED CT Homo sapiens
VETERINARY_WORDS = re.compile(
    r"\b(CANINE|FELINE|EQUINE|BOVINE|OVINE|PORCINE|VETERINARY|VETERINARIAN|DOG|CAT|HORSE|VET)\b", re.IGNORECASE
)
LATERAL_WORDS = re.compile(r"\b(LATERAL|LAT)\b", re.IGNORECASE)
OTHER_VIEW_WORDS = re.compile(r"\b(OBLIQUE|OBL|DECUBITUS|DECUB|LORDOTIC)\b", re.IGNORECASE)
FRONTAL_WORDS = re.compile(r"\b(PA|AP|FRONTAL|POSTERO-?ANTERIOR|ANTERO-?POSTERIOR)\b", re.IGNORECASE)
CHEST_WORDS = re.compile(r"\b(CHEST|THORAX|THORACIC|TORAX|TÓRAX|LUNGS?|CXR)\b", re.IGNORECASE)
BODY_PART_TEXT_KEYWORDS = ("StudyDescription", "SeriesDescription", "ProtocolName")
# AnatomicRegionSequence codes for the chest (PS3.16 CID 4031; older SNOMED/SRT spellings too).
CHEST_REGION_CODES = frozenset({"816094009", "51185008", "43799004", "302551006", "T-D3000", "T-D3050"})
# ViewCodeSequence (PS3.16 CID 4010): frontal = PA, AP, frontal; lateral = lateral, left/right lateral.
FRONTAL_VIEW_CODES = frozenset({"272479007", "399348003", "399033003", "R-10214", "R-10206"})
LATERAL_VIEW_CODES = frozenset({"399067008", "399173006", "399198007", "R-10236", "R-10232"})
# The model's intended use: TorchXRayVision's training sets (NIH, CheXpert, MIMIC-CXR, PadChest...)
# are overwhelmingly adult chest films; a child's differs (thymus, proportions, positioning).
DEFAULT_MIN_AGE_YEARS = 18.0
AGE_UNITS_DAYS = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
DESCRIPTION_KEYWORDS = (
    "AcquisitionDeviceProcessingDescription",
    "SeriesDescription",
    "ProtocolName",
    "StudyDescription",
    "InstitutionName",
)
VIEW_TEXT_KEYWORDS = ("AcquisitionDeviceProcessingDescription", "SeriesDescription", "ProtocolName")

SEED_FILE = Path("seeds") / "body_part_taxonomy.csv"


# The vocabularies live with medlake's others; the gate's names for them.
Decision = GateDecision


class Header(Protocol):
    """What the gate reads: a pydicom Dataset, or Orthanc's simplified tags (a keyword mapping)."""

    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass(frozen=True)
class GatePolicy:
    """How wide the gate is; recorded with every run (``model_runs.gate_policy``)."""

    allow_lateral: bool = False
    require_body_part: bool = False
    require_view: bool = False
    min_age_years: float = DEFAULT_MIN_AGE_YEARS  # 0: no age limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed_views": sorted(FRONTAL_VIEWS | (LATERAL_VIEWS if self.allow_lateral else set())),
            "body_part_absent": "skip" if self.require_body_part else "accept_flagged",
            "view_absent": "skip" if self.require_view else "accept_flagged",
            "modalities": sorted(IMAGE_MODALITIES),
            "min_age_years": self.min_age_years,
            "age_absent": "accept_flagged",
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one instance."""

    decision: Decision
    reason: SkipReason | None = None
    detail: str | None = None
    flags: tuple[GateFlag, ...] = field(default=())

    @property
    def accepted(self) -> bool:
        return self.decision == Decision.ACCEPTED

    @classmethod
    def skip(cls, reason: SkipReason, detail: str) -> GateResult:
        return cls(Decision.SKIPPED, reason, detail)

    @property
    def flags_text(self) -> str | None:
        return ";".join(self.flags) or None


class BodyPartTaxonomy:
    """The lake's ``body_part_taxonomy`` seed: spelling (trimmed, lower case) -> canonical body part."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)

    @classmethod
    def from_seed(cls, seed: Path) -> BodyPartTaxonomy:
        with open(seed, newline="", encoding="utf-8") as handle:
            return cls({row["spelling"].strip().lower(): row["body_part"] for row in csv.DictReader(handle)})

    def canonical(self, spelling: str) -> str | None:
        # The dbt macro normalise_spelling is lower(trim(x)): the same lookup form.
        return self.mapping.get(spelling.strip().lower())


@functools.cache
def lake_taxonomy() -> BodyPartTaxonomy:
    """The seed shipped with the dbt project, read where dbt reads it (never a copy)."""
    from medlake.settings import dbt_project_dir

    return BodyPartTaxonomy.from_seed(dbt_project_dir() / SEED_FILE)


# --- reading header values ----------------------------------------------------------------


def _text(header: Header, keyword: str) -> str:
    value = header.get(keyword)
    if value is None:
        return ""
    if hasattr(value, "value") and not isinstance(value, str | bytes):  # a pydicom DataElement
        value = value.value
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(item) for item in value)
    return str(value).strip("\x00 ")


def _int(header: Header, keyword: str, default: int) -> int:
    text = _text(header, keyword)
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _species_codes(header: Header) -> list[str]:
    values = []
    for item in header.get("PatientSpeciesCodeSequence") or []:  # pydicom Datasets or Orthanc dicts
        values += [_text(item, "CodeValue"), _text(item, "CodeMeaning")]
    return [value.upper() for value in values if value]


def _codes(header: Header, keyword: str) -> list[tuple[str, str]]:
    """(CodeValue, CodeMeaning) of each item of a code sequence (pydicom Datasets or Orthanc dicts)."""
    return [(_text(item, "CodeValue"), _text(item, "CodeMeaning")) for item in header.get(keyword) or []]


def patient_age_years(header: Header) -> float | None:
    """PatientAge (``003M``, ``045Y``...), else PatientBirthDate to the study (or series/content) date."""
    match = re.fullmatch(r"(\d{1,3})\s*([DWMY])", _text(header, "PatientAge").upper())
    if match:
        return int(match.group(1)) * AGE_UNITS_DAYS[match.group(2)] / 365.25
    birth = _date(_text(header, "PatientBirthDate"))
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        when = _date(_text(header, keyword))
        if birth is not None and when is not None and when >= birth:
            return (when - birth).days / 365.25
    return None


def _date(text: str):
    import datetime as dt

    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date() if len(text) >= 8 else None
    except ValueError:
        return None


def _described_body_part(header: Header, taxonomy: BodyPartTaxonomy) -> tuple[str, str] | None:
    """(keyword, body part) when a description names a non-chest body part the seed knows and no chest."""
    for keyword in BODY_PART_TEXT_KEYWORDS:
        text = _text(header, keyword)
        if not text or CHEST_WORDS.search(text):
            continue
        words = re.findall(r"[^\W\d_]+", text)
        for phrase in [" ".join(pair) for pair in itertools.pairwise(words)] + words:
            canonical = taxonomy.canonical(phrase)
            if canonical is not None and canonical != CHEST:
                return keyword, canonical
    return None


def _coded_view(header: Header) -> tuple[str, str] | None:
    """('frontal' | 'lateral' | 'other', meaning) from the ViewCodeSequence, None if it is empty."""
    for value, meaning in _codes(header, "ViewCodeSequence"):
        text = meaning.lower()
        if value in FRONTAL_VIEW_CODES or text in {"postero-anterior", "antero-posterior", "frontal"}:
            return "frontal", meaning or value
        if value in LATERAL_VIEW_CODES or text in {"lateral", "left lateral", "right lateral"}:
            return "lateral", meaning or value
        if value or meaning:
            return "other", meaning or value
    return None


# --- the rules ----------------------------------------------------------------------------

Check = Callable[[Header, GatePolicy, BodyPartTaxonomy], GateResult | None]


def _check_non_image(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    sop_class = _text(header, "SOPClassUID")
    modality = _text(header, "Modality").upper()
    if modality in NON_IMAGE_MODALITIES or sop_class.startswith(NON_IMAGE_SOP_PREFIXES):
        return GateResult.skip(
            SkipReason.NON_IMAGE, f"non-image instance (Modality {modality or '-'}, SOP Class {sop_class})"
        )
    if not _text(header, "Rows") or not _text(header, "Columns"):
        return GateResult.skip(SkipReason.NON_IMAGE, f"no pixel matrix (SOP Class {sop_class or '-'})")
    return None


def _check_modality(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    modality = _text(header, "Modality").upper()
    if modality not in IMAGE_MODALITIES:
        return GateResult.skip(SkipReason.MODALITY, f"Modality {modality or '(absent)'}: the model reads CR/DX only")
    return None


def _check_for_processing(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    intent = _text(header, "PresentationIntentType").upper()
    if intent == "FOR PROCESSING" or _text(header, "SOPClassUID") in FOR_PROCESSING_SOP_CLASSES:
        return GateResult.skip(SkipReason.FOR_PROCESSING, "For Processing image (raw detector data, not for display)")
    return None


def _check_frames(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    frames = _int(header, "NumberOfFrames", 1)
    if frames > 1:
        return GateResult.skip(SkipReason.MULTI_FRAME, f"{frames} frames: the model reads single images")
    return None


def _check_grayscale(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    photometric = _text(header, "PhotometricInterpretation").upper()
    samples = _int(header, "SamplesPerPixel", 1)
    if photometric not in GRAYSCALE or samples != 1:
        return GateResult.skip(
            SkipReason.NOT_GRAYSCALE, f"PhotometricInterpretation {photometric or '(absent)'}, {samples} samples/pixel"
        )
    return None


def _check_species(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    species = _text(header, "PatientSpeciesDescription").upper()
    codes = _species_codes(header)
    if species and species not in HUMAN_SPECIES:
        return GateResult.skip(SkipReason.NON_HUMAN, f"PatientSpeciesDescription {species}")
    if codes and not HUMAN_SPECIES.intersection(codes):
        return GateResult.skip(SkipReason.NON_HUMAN, f"PatientSpeciesCodeSequence {', '.join(codes)}")
    for keyword in DESCRIPTION_KEYWORDS:
        match = VETERINARY_WORDS.search(_text(header, keyword))
        if match:
            return GateResult.skip(SkipReason.NON_HUMAN, f"veterinary image: {keyword} says {match.group(0)!r}")
    return None


def _check_age(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    age = patient_age_years(header)
    if age is not None and policy.min_age_years > 0 and age < policy.min_age_years:
        shown = _text(header, "PatientAge") or f"{age:.1f} years (birth date to study date)"
        return GateResult.skip(
            SkipReason.AGE, f"patient age {shown}: under {policy.min_age_years:g} years (the model reads adults)"
        )
    return None


def _check_body_part(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    body_part = _text(header, "BodyPartExamined")
    if not body_part:
        regions = [(value, meaning) for value, meaning in _codes(header, "AnatomicRegionSequence") if value or meaning]
        if regions:
            if any(value in CHEST_REGION_CODES or taxonomy.canonical(meaning) == CHEST for value, meaning in regions):
                return None
            named = ", ".join(meaning or value for value, meaning in regions)
            return GateResult.skip(
                SkipReason.BODY_PART, f"no BodyPartExamined; AnatomicRegionSequence {named}: not a chest"
            )
        described = _described_body_part(header, taxonomy)
        if described is not None:
            keyword, canonical = described
            return GateResult.skip(
                SkipReason.BODY_PART, f"no BodyPartExamined; {keyword} names {canonical}, not a chest"
            )
        if policy.require_body_part:
            return GateResult.skip(SkipReason.BODY_PART_MISSING, "BodyPartExamined absent (--require-body-part)")
        return None
    canonical = taxonomy.canonical(body_part)
    if canonical != CHEST:
        mapped = f" (= {canonical})" if canonical else " (not in body_part_taxonomy)"
        return GateResult.skip(SkipReason.BODY_PART, f"BodyPartExamined {body_part}{mapped}: not a chest")
    return None


def _check_view(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    view = _text(header, "ViewPosition").upper()
    if view:
        if view in FRONTAL_VIEWS or (policy.allow_lateral and view in LATERAL_VIEWS):
            return None
        return GateResult.skip(SkipReason.VIEW, f"ViewPosition {view}: the model reads frontal (PA/AP) views")
    coded = _coded_view(header)
    if coded is not None:
        kind, meaning = coded
        if kind == "frontal" or (kind == "lateral" and policy.allow_lateral):
            return None
        return GateResult.skip(
            SkipReason.VIEW, f"no ViewPosition; ViewCodeSequence {meaning}: the model reads frontal (PA/AP) views"
        )
    for keyword in VIEW_TEXT_KEYWORDS:
        text = _text(header, keyword)
        if OTHER_VIEW_WORDS.search(text) or (not policy.allow_lateral and LATERAL_WORDS.search(text)):
            return GateResult.skip(SkipReason.VIEW, f"no ViewPosition, and {keyword} names a non-frontal view")
    study = _text(header, "StudyDescription")  # a study's words name its views: only a study with no frontal
    if not FRONTAL_WORDS.search(study) and (
        OTHER_VIEW_WORDS.search(study) or (not policy.allow_lateral and LATERAL_WORDS.search(study))
    ):
        return GateResult.skip(SkipReason.VIEW, "no ViewPosition, and StudyDescription names only non-frontal views")
    if policy.require_view:
        return GateResult.skip(SkipReason.VIEW_MISSING, "ViewPosition absent (--require-view)")
    return None


@dataclass(frozen=True)
class Rule:
    reason: SkipReason
    summary: str
    check: Check


RULES: tuple[Rule, ...] = (
    Rule(SkipReason.NON_IMAGE, "an image (not SR/KO/PR/document/RT/waveform)", _check_non_image),
    Rule(SkipReason.MODALITY, "Modality CR or DX", _check_modality),
    Rule(SkipReason.FOR_PROCESSING, "not For Processing", _check_for_processing),
    Rule(SkipReason.MULTI_FRAME, "a single frame", _check_frames),
    Rule(SkipReason.NOT_GRAYSCALE, "grayscale MONOCHROME1/2", _check_grayscale),
    Rule(SkipReason.NON_HUMAN, "a human patient", _check_species),
    Rule(SkipReason.AGE, "an adult (--min-age-years, default 18)", _check_age),
    Rule(SkipReason.BODY_PART, "body part Chest (body_part_taxonomy seed)", _check_body_part),
    Rule(SkipReason.VIEW, "a frontal view (PA/AP)", _check_view),
)


def evaluate(header: Header, policy: GatePolicy | None = None, taxonomy: BodyPartTaxonomy | None = None) -> GateResult:
    """Accept or skip one instance from its header; never decodes pixels, never raises on odd values."""
    policy = policy or GatePolicy()
    taxonomy = taxonomy or lake_taxonomy()
    for rule in RULES:
        verdict = rule.check(header, policy, taxonomy)
        if verdict is not None:
            return verdict
    flags: list[GateFlag] = []
    if not _text(header, "BodyPartExamined") and not _codes(header, "AnatomicRegionSequence"):
        flags.append(GateFlag.BODY_PART_ABSENT)
    view = _text(header, "ViewPosition").upper()
    if not view and _coded_view(header) is None:
        flags.append(GateFlag.VIEW_ABSENT)
    elif view in LATERAL_VIEWS:
        flags.append(GateFlag.LATERAL_ALLOWED)
    if patient_age_years(header) is None:
        flags.append(GateFlag.AGE_ABSENT)
    return GateResult(Decision.ACCEPTED, flags=tuple(flags))
