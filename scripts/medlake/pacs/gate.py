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
body_part               BodyPartExamined does not map to ``Chest`` through the lake's
                        ``body_part_taxonomy`` seed (``CHEST``, ``THORAX``, ``TORAX``, ``TÓRAX``);
                        absent: accepted and flagged ``body_part_absent`` (``--require-body-part``:
                        skipped as ``body_part_missing``)
view                    ViewPosition is not PA/AP (LL, RL, LATERAL, decubitus, oblique...); absent:
                        a lateral named in the acquisition/series/protocol description still skips,
                        otherwise accepted and flagged ``view_absent`` (``--require-view``: skipped
                        as ``view_missing``); ``--allow-view lateral`` accepts laterals too
======================  ==========================================================================

Skips are not failures: the loop lands each one with its reason and counts it.
"""

from __future__ import annotations

import csv
import functools
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed_views": sorted(FRONTAL_VIEWS | (LATERAL_VIEWS if self.allow_lateral else set())),
            "body_part_absent": "skip" if self.require_body_part else "accept_flagged",
            "view_absent": "skip" if self.require_view else "accept_flagged",
            "modalities": sorted(IMAGE_MODALITIES),
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


def _check_body_part(header: Header, policy: GatePolicy, taxonomy: BodyPartTaxonomy) -> GateResult | None:
    body_part = _text(header, "BodyPartExamined")
    if not body_part:
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
    if not policy.allow_lateral:
        for keyword in VIEW_TEXT_KEYWORDS:
            if LATERAL_WORDS.search(_text(header, keyword)):
                return GateResult.skip(SkipReason.VIEW, f"no ViewPosition, and {keyword} names a lateral view")
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
    if not _text(header, "BodyPartExamined"):
        flags.append(GateFlag.BODY_PART_ABSENT)
    view = _text(header, "ViewPosition").upper()
    if not view:
        flags.append(GateFlag.VIEW_ABSENT)
    elif view in LATERAL_VIEWS:
        flags.append(GateFlag.LATERAL_ALLOWED)
    return GateResult(Decision.ACCEPTED, flags=tuple(flags))
