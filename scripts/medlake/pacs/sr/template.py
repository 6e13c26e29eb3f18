"""The SR of one model identity built once by highdicom, then patched per image.

:func:`medlake.pacs.sr.builder.build_sr` builds every SR with highdicom from scratch: ~150 ms of
CPU per image, twice the model's forward pass, nearly all of it spent building, validating and
encoding the same 18 measurement groups again. Only a few values in that tree depend on the
image: the source's SOP Class/Instance UIDs, each group's tracking UID, each score and its
Present/Absent, and the Image Library entry. So an :class:`SrTemplate` keeps highdicom's content
tree for a model identity *encoded*, with holes where those values go, and per image:

* builds the *header* with highdicom itself (the same ``Comprehensive3DSR`` call as the builder,
  with a content tree of no items), so patient and study modules, evidence, character set and
  contributing equipment stay highdicom's rules, and encodes it with pydicom (small);
* fills the holes (each value encoded as pydicom encodes it; the Image Library entry is rebuilt
  by highdicom for this image and encoded by pydicom), recomputes every enclosing item and
  sequence length, and splices the content tree into the header.

The result is the same bytes as ``build_sr`` for the same arguments; the tests compare the two
on every shared DICOM, pydicom's test files and synthetic images, and run dciodvfy on them.

A template is keyed by what changes the tree's shape or its encoding: the model identity, the
pathologies in order, whether the image gets an Image Library entry, and the character set.
A rendered template holds no per-image state, so it is safe to share between threads.
"""

from __future__ import annotations

import datetime as dt
import struct
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from io import BytesIO

import highdicom as hd
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_sequence_item
from pydicom.tag import Tag
from pydicom.valuerep import DS

from medlake.errors import DicomError
from medlake.pacs.model.weights import ModelIdentity
from medlake.pacs.sr import builder
from medlake.pacs.sr.codes import ABSENT, FINDING_CONCEPTS, PRESENT

__all__ = ["SrTemplate", "SrTemplates", "build_job", "build_sr_fast", "init_worker"]

# Concept codes of the content items found in highdicom's tree (PS3.16 DCM).
_IMAGE_LIBRARY = "111028"
_IMAGING_MEASUREMENTS = "126010"
_CONTENT_SEQUENCE = Tag("ContentSequence")
_ITEM = b"\xfe\xff\x00\xe0"


def _code(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeValue)


def _tag_bytes(tag: int) -> bytes:
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF)


def _writer() -> DicomBytesIO:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    return fp


def _encode_element(element: DataElement, encodings) -> bytes:
    fp = _writer()
    write_data_element(fp, element, encodings)
    return fp.getvalue()


def _encode_item(item: Dataset, encodings) -> bytes:
    fp = _writer()
    write_sequence_item(fp, item, encodings)
    return fp.getvalue()


def _short(tag: int, vr: bytes, value: bytes) -> bytes:
    """An explicit-VR little-endian element with a 2-byte length (UI, DS, FD)."""
    return _tag_bytes(tag) + vr + struct.pack("<H", len(value)) + value


_UID_TAG = Tag("UID")
_NUMERIC_TAG = Tag("NumericValue")
_FLOAT_TAG = Tag("FloatingPointValue")
_CLASS_TAG = Tag("ReferencedSOPClassUID")
_INSTANCE_TAG = Tag("ReferencedSOPInstanceUID")


def _uid(tag: int, value: str) -> bytes:
    raw = value.encode("ascii")
    return _short(tag, b"UI", raw + b"\0" if len(raw) % 2 else raw)


def _ds(value: float) -> bytes:
    raw = str(DS(value, auto_format=True)).encode("ascii")
    return _short(_NUMERIC_TAG, b"DS", raw + b" " if len(raw) % 2 else raw)


def _fd(value: float) -> bytes:
    return _short(_FLOAT_TAG, b"FD", struct.pack("<d", value))


@dataclass(frozen=True)
class _Hole:
    name: str  # "uid", "ds", "fd", "eval", "class", "instance" (per group) or "library"
    group: int = -1


@dataclass(frozen=True)
class _Sequence:
    prefix: bytes  # tag, "SQ", 2 reserved bytes; the 4-byte length follows
    items: tuple  # of _Item | _Hole("library")


@dataclass(frozen=True)
class _Item:
    parts: tuple  # of bytes | _Hole | _Sequence


def _render(node, values: dict) -> bytes:
    if isinstance(node, bytes):
        return node
    if isinstance(node, _Hole):
        return values[node]
    if isinstance(node, _Item):
        body = b"".join(_render(part, values) for part in node.parts)
        return _ITEM + struct.pack("<I", len(body)) + body
    body = b"".join(_render(item, values) for item in node.items)
    return node.prefix + struct.pack("<I", len(body)) + body


class SrTemplate:
    """One model identity's SR content tree, encoded with holes (see the module docstring)."""

    def __init__(self, document: Dataset, pathologies: tuple[str, ...], image_library: bool) -> None:
        self.pathologies = pathologies
        self.image_library = image_library
        self._encodings = document.get("SpecificCharacterSet", "iso8859")
        # The root content item without its children: the header build's (empty) content.
        self._root_item = Dataset()
        for keyword in ("ValueType", "ConceptNameCodeSequence", "ContinuityOfContent", "ContentTemplateSequence"):
            if keyword in document:
                self._root_item.add(deepcopy(document[keyword]))
        content = document.ContentSequence
        holes: dict[tuple[int, int], _Hole] = {}
        item_holes: dict[int, _Hole] = {}
        library = [item for item in content if _code(item) == _IMAGE_LIBRARY]
        if image_library != bool(library):
            raise DicomError("SR template: Image Library entry expected but not found (or found but not expected)")
        if library:
            item_holes[id(library[0])] = _Hole("library")
        measurements = next(item for item in content if _code(item) == _IMAGING_MEASUREMENTS)
        groups = list(measurements.ContentSequence)
        if len(groups) != len(pathologies):
            raise DicomError(f"SR template: {len(groups)} measurement groups for {len(pathologies)} pathologies")
        for index, (group, pathology) in enumerate(zip(groups, pathologies, strict=True)):
            holes.update(_group_holes(group, pathology, index))
        self._holes, self._item_holes = holes, item_holes
        self._content = self._sequence(document[_CONTENT_SEQUENCE])
        self._evaluations = {
            verdict: _encode_element(DataElement("ConceptCodeSequence", "SQ", [concept]), self._encodings)
            for verdict, concept in ((True, PRESENT), (False, ABSENT))
        }
        # Stands in for the content tree while the header is encoded; random, so no header value equals it.
        self._sentinel = "2.25." + str(uuid.uuid4().int)

    # --- the skeleton ---------------------------------------------------------------------

    def _has_hole(self, dataset: Dataset) -> bool:
        for element in dataset:
            if (id(dataset), element.tag) in self._holes:
                return True
            if element.VR == "SQ":
                for item in element.value:
                    if id(item) in self._item_holes or self._has_hole(item):
                        return True
        return False

    def _sequence(self, element: DataElement) -> _Sequence:
        items = tuple(self._item_holes.get(id(item)) or _Item(self._parts(item)) for item in element.value)
        return _Sequence(_tag_bytes(element.tag) + b"SQ\0\0", items)

    def _parts(self, dataset: Dataset) -> tuple:
        parts: list = []
        for tag in sorted(dataset.keys()):
            element = dataset[tag]
            hole = self._holes.get((id(dataset), tag))
            if hole is not None:
                parts.append(hole)
            elif element.VR == "SQ" and any(
                id(item) in self._item_holes or self._has_hole(item) for item in element.value
            ):
                parts.append(self._sequence(element))
            else:
                encoded = _encode_element(element, self._encodings)
                if parts and isinstance(parts[-1], bytes):
                    parts[-1] += encoded
                else:
                    parts.append(encoded)
        return tuple(parts)

    # --- per image ------------------------------------------------------------------------

    def _empty_root(self) -> Dataset:
        """A fresh copy of the root content item with no children (highdicom keeps its elements)."""
        root = deepcopy(self._root_item)
        root.ContentSequence = []
        return root

    @classmethod
    def from_build(
        cls, source: Dataset, findings: Sequence[builder.Finding], model: ModelIdentity, *, run_at: dt.datetime
    ) -> SrTemplate:
        """The template for ``source``'s key, from highdicom's own SR for it."""
        document = builder.build_document(source, findings, model, run_at=run_at, instance_number=1)
        library = builder.describable_in_image_library(builder.evidence(source))
        return cls(document, tuple(f.pathology for f in findings), library)

    def _values(self, source: Dataset, evidence: Dataset, findings: Sequence[builder.Finding], model) -> dict:
        values: dict[_Hole, bytes] = {}
        if self.image_library:
            values[_Hole("library")] = _encode_item(hd.sr.ImageLibrary([evidence])[0], self._encodings)
        sop_class = _uid(_CLASS_TAG, str(source.SOPClassUID))
        sop_instance = _uid(_INSTANCE_TAG, str(source.SOPInstanceUID))
        for index, finding in enumerate(findings):
            value = round(finding.score, 6)
            values[_Hole("uid", index)] = _uid(_UID_TAG, builder.tracking_uid(source, model, finding.pathology))
            values[_Hole("ds", index)] = _ds(value)
            values[_Hole("fd", index)] = _fd(value)
            values[_Hole("eval", index)] = self._evaluations[bool(finding.is_positive)]
            values[_Hole("class", index)] = sop_class
            values[_Hole("instance", index)] = sop_instance
        return values

    def render(
        self,
        source: Dataset,
        findings: Sequence[builder.Finding],
        model: ModelIdentity,
        *,
        run_at: dt.datetime,
        instance_number: int,
    ) -> builder.BuiltSr:
        """The SR for one image: highdicom's header, the template's tree with this image's values."""
        if tuple(f.pathology for f in findings) != self.pathologies:
            raise DicomError("SR template used for other pathologies than it was built for")
        try:
            run_at = builder.utc(run_at)
            if instance_number < 1:
                raise DicomError(f"instance_number must be >= 1, got {instance_number}")
            evidence = builder.evidence(source)
            # highdicom's check that this is an image a measurement may reference (not RTDOSE, SEG,
            # a waveform...): the template skips building the groups, not the rules.
            hd.sr.SourceImageForMeasurementGroup.from_source_image(evidence)
            series_uid = builder.sr_series_uid(source.StudyInstanceUID, model)
            sop_uid = builder.sr_instance_uid(source.SOPInstanceUID, model)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # single-component names, as in the builder
                document = builder.document(
                    evidence, self._empty_root(), series_uid, sop_uid, instance_number, run_at, model
                )
            builder.finish_document(document, run_at, evidence)
            if document.get("SpecificCharacterSet", "iso8859") != self._encodings:
                raise DicomError("SR template used for another character set than it was built for")
            sentinel_item = Dataset()
            sentinel_item.UID = self._sentinel
            document.ContentSequence = [sentinel_item]
            buffer = BytesIO()
            document.save_as(buffer, enforce_file_format=True)
            header = buffer.getvalue()
            placeholder = _render(
                _Sequence(_tag_bytes(_CONTENT_SEQUENCE) + b"SQ\0\0", (_Item((_uid(_UID_TAG, self._sentinel),)),)),
                {},
            )
            if header.count(placeholder) != 1:
                raise DicomError("SR template: the content placeholder is not found once in the encoded header")
            content = _render(self._content, self._values(source, evidence, findings, model))
            data = header.replace(placeholder, content)
        except DicomError:
            raise
        except Exception as exc:
            raise DicomError(
                f"cannot build SR for {source.get('SOPInstanceUID')}: {type(exc).__name__}: {exc}"
            ) from exc
        return builder.BuiltSr(
            sop_instance_uid=sop_uid,
            series_instance_uid=series_uid,
            study_instance_uid=str(source.StudyInstanceUID),
            patient_id=str(evidence.PatientID),
            referenced_sop_instance_uid=str(source.SOPInstanceUID),
            data=data,
        )


def _group_holes(group: Dataset, pathology: str, index: int) -> dict[tuple[int, int], _Hole]:
    """(dataset id, tag) -> hole for the values of one measurement group that change per image."""
    concept = FINDING_CONCEPTS[pathology]
    holes: dict[tuple[int, int], _Hole] = {}
    for item in group.ContentSequence:
        value_type = item.ValueType
        if value_type == "UIDREF":
            holes[(id(item), _UID_TAG)] = _Hole("uid", index)
        elif value_type == "NUM":
            measured = item.MeasuredValueSequence[0]
            holes[(id(measured), _NUMERIC_TAG)] = _Hole("ds", index)
            holes[(id(measured), _FLOAT_TAG)] = _Hole("fd", index)
        elif value_type == "IMAGE":
            reference = item.ReferencedSOPSequence[0]
            holes[(id(reference), _CLASS_TAG)] = _Hole("class", index)
            holes[(id(reference), _INSTANCE_TAG)] = _Hole("instance", index)
        elif value_type == "CODE":
            name = item.ConceptNameCodeSequence[0]
            if (name.CodeValue, name.CodingSchemeDesignator) == (concept.value, concept.scheme_designator):
                holes[(id(item), Tag("ConceptCodeSequence"))] = _Hole("eval", index)
    found = {hole.name for hole in holes.values()}
    missing = {"uid", "ds", "fd", "class", "instance", "eval"} - found
    if missing:
        raise DicomError(f"SR template: measurement group {pathology!r} lacks {sorted(missing)}")
    return holes


class SrTemplates:
    """Templates by key (model identity, pathologies, Image Library or not, character set), built on first use."""

    def __init__(self) -> None:
        self._templates: dict[tuple, SrTemplate] = {}
        self._lock = threading.Lock()

    def build(
        self,
        source: Dataset,
        findings: Sequence[builder.Finding],
        model: ModelIdentity,
        *,
        run_at: dt.datetime,
        instance_number: int,
    ) -> builder.BuiltSr:
        """The SR for one image; raises :class:`DicomError` with the reason, like ``build_sr``."""
        try:
            template = self._template(source, findings, model, run_at)
        except DicomError:
            raise
        except Exception as exc:
            raise DicomError(
                f"cannot build SR for {source.get('SOPInstanceUID')}: {type(exc).__name__}: {exc}"
            ) from exc
        return template.render(source, findings, model, run_at=run_at, instance_number=instance_number)

    def _template(self, source: Dataset, findings, model: ModelIdentity, run_at: dt.datetime) -> SrTemplate:
        key = (
            model.uid_key,
            tuple(f.pathology for f in findings),
            builder.describable_in_image_library(builder.evidence(source)),
            str(source.get("SpecificCharacterSet", "")),
        )
        template = self._templates.get(key)
        if template is None:
            with self._lock:
                template = self._templates.get(key)
                if template is None:
                    template = self._templates[key] = SrTemplate.from_build(source, findings, model, run_at=run_at)
        return template


_PROCESS_TEMPLATES = SrTemplates()


def build_sr_fast(
    source: Dataset,
    findings: Sequence[builder.Finding],
    model: ModelIdentity,
    *,
    run_at: dt.datetime,
    instance_number: int,
) -> builder.BuiltSr:
    """:func:`~medlake.pacs.sr.builder.build_sr`'s SR, from this process's templates."""
    return _PROCESS_TEMPLATES.build(source, findings, model, run_at=run_at, instance_number=instance_number)


def init_worker() -> None:
    """Start of an SR worker process: imports only this package (no pandas, pyarrow, torch)."""
    import os
    import signal

    # Ctrl-C reaches the whole process group: the parent finishes its page and stops the pool itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def build_job(
    header: Dataset,
    findings: Sequence[builder.Finding],
    identity: ModelIdentity,
    run_at: dt.datetime,
    instance_number: int,
):
    """One SR build as the loop runs it (a thread, or a worker process that imports only this package).

    Returns (BuiltSr | None, error | None, seconds of CPU-bound work).
    """
    started = time.perf_counter()
    try:
        built = build_sr_fast(header, findings, identity, run_at=run_at, instance_number=instance_number)
        return built, None, time.perf_counter() - started
    except DicomError as exc:
        return None, f"SR not built: {exc}", time.perf_counter() - started
