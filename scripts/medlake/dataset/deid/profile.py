"""The PS3.15 Basic Application Level Confidentiality Profile applied to one DICOM dataset.

Every attribute, in the dataset, in every item of every sequence and in the file meta, gets the
action :mod:`.actions` resolves for it; the file meta is rebuilt from scratch (only the SOP
class, the new SOP instance UID and the transfer syntax survive: Source/Sending/Receiving AE
titles and private information go) and the 128-byte preamble is zeroed. The pixels are not
touched: an image whose Burned In Annotation is YES is refused, its pixels may show the name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence

from medlake.dataset.deid import ps315_table
from medlake.dataset.deid.actions import Action, action_for, is_removed_group
from medlake.dataset.deid.descriptors import is_provably_clean
from medlake.dataset.deid.keys import Keys, Subject, shift_date, shift_datetime
from medlake.errors import DatasetError

PROFILE = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"
# (code value, code meaning) in DCM (PS3.16 CID 7050), as DeidentificationMethodCodeSequence lists them.
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113105", "Clean Descriptors Option"),
)
# DeidentificationMethod is LO (64 characters at most); the code sequence says it in full.
METHOD = "medlake PS3.15 " + ps315_table.EDITION + " Basic, Modified Dates, Clean Descriptors"
DUMMY_TEXT = "ANONYMIZED"
_DUMMIES = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000D",
    "DS": "0",
    "IS": "0",
}
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64}
_NUMERIC = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"})
_BINARY = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})


class DeidentificationError(DatasetError):
    """One DICOM cannot be de-identified (unreadable, or pixels that may carry burned-in text)."""


class BurnedInAnnotationError(DeidentificationError):
    """The image says its pixels carry burned-in annotation: not exported de-identified."""


def method_code_sequence() -> list[Dataset]:
    codes = []
    for value, meaning in METHOD_CODES:
        code = Dataset()
        code.CodeValue = value
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = meaning
        codes.append(code)
    return codes


class Deidentifier:
    """Rewrites DICOM datasets de-identified with one lake's keys (cheap to build; no caches)."""

    def __init__(self, keys: Keys | bytes | str) -> None:
        if isinstance(keys, str):
            keys = keys.encode()
        self.keys = keys if isinstance(keys, Keys) else Keys(keys)

    def subject_of(self, dataset: Dataset) -> Subject:
        """The subject when the caller names none: the pseudonym of the file's own Patient ID."""
        from medlake.lake.pseudonyms import pseudonymise

        patient_id = str(dataset.get("PatientID", "") or "").strip()
        group = (
            pseudonymise(self.keys.pseudonym_key, patient_id)
            if patient_id
            else "file:" + str(dataset.get("SOPInstanceUID", ""))
        )
        return self.keys.subject(group)

    def deidentify(self, dataset: Dataset, subject: Subject | None = None) -> Dataset:
        if str(dataset.get("BurnedInAnnotation", "")).upper() == "YES":
            raise BurnedInAnnotationError("BurnedInAnnotation is YES: the pixels may show identifiers")
        subject = subject or self.subject_of(dataset)
        self._walk(dataset, subject)
        # The patient is the export's pseudonym (a dummy value the profile allows for Z/D), so a
        # viewer groups a patient's studies and the file agrees with the manifest's patient_key.
        dataset.PatientID = subject.patient_key
        dataset.PatientName = subject.patient_key
        dataset.PatientIdentityRemoved = "YES"
        dataset.LongitudinalTemporalInformationModified = "MODIFIED"
        dataset.DeidentificationMethod = METHOD
        dataset.DeidentificationMethodCodeSequence = method_code_sequence()
        self._rebuild_file_meta(dataset)
        return dataset

    def _walk(self, dataset: Dataset, subject: Subject) -> None:
        for tag in list(dataset.keys()):
            element = dataset[tag]
            if is_removed_group(element.tag):
                del dataset[tag]
                continue
            action, fallback = action_for(element.tag, element.VR, element.value)
            if action is Action.CLEAN:
                action = Action.KEEP if is_provably_clean(element.value) else fallback
            self._apply(dataset, element, action, subject)

    def _apply(self, dataset: Dataset, element: DataElement, action: Action | None, subject: Subject) -> None:
        vr = element.VR
        if action is Action.KEEP:
            return
        if action is Action.REMOVE or action is None:
            del dataset[element.tag]
        elif action is Action.RECURSE:
            for item in element.value or ():
                self._walk(item, subject)
        elif action is Action.EMPTY:
            element.value = Sequence() if vr == "SQ" else (b"" if vr in _BINARY else None)
        elif action is Action.UID:
            element.value = _map_values(element.value, self.keys.uid) if vr == "UI" else _dummy(vr)
        elif action is Action.SHIFT:
            element.value = _shifted(element, subject.date_offset_days)
        elif action is Action.DUMMY:
            element.value = self.keys.uid(str(element.value)) if vr == "UI" else _dummy(vr)

    def _rebuild_file_meta(self, dataset: Dataset) -> None:
        old = getattr(dataset, "file_meta", None)
        if getattr(dataset, "preamble", None) is not None:
            dataset.preamble = b"\x00" * 128  # 128 bytes nobody reads, and anybody can fill
        if old is None or "TransferSyntaxUID" not in old:
            dataset.file_meta = FileMetaDataset()  # a bare dataset stays bare
            return
        meta = FileMetaDataset()
        sop_class = dataset.get("SOPClassUID") or old.get("MediaStorageSOPClassUID")
        sop_instance = dataset.get("SOPInstanceUID") or old.get("MediaStorageSOPInstanceUID")
        if sop_class:
            meta.MediaStorageSOPClassUID = sop_class
        if sop_instance:
            # the dataset's UID is remapped already; the file meta's own copy is remapped the same way
            remapped = "SOPInstanceUID" in dataset
            meta.MediaStorageSOPInstanceUID = sop_instance if remapped else self.keys.uid(sop_instance)
        meta.TransferSyntaxUID = old.TransferSyntaxUID
        dataset.file_meta = meta

    def deidentify_file(self, source: Path, destination: Path, subject: Subject | None = None) -> None:
        """Read ``source``, de-identify it, write ``destination`` atomically (same encoding)."""
        dataset = read_dicom(source)
        self.deidentify(dataset, subject)
        meta = dataset.file_meta
        # A file that came without (complete) File Meta is written back the same way.
        had_meta = all(keyword in meta for keyword in ("TransferSyntaxUID", "MediaStorageSOPClassUID"))
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=destination.parent)
        os.close(fd)
        try:
            dataset.save_as(tmp_name, enforce_file_format=had_meta)
            os.replace(tmp_name, destination)
        except Exception as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise DeidentificationError(f"cannot write the de-identified copy of {source.name}: {exc}") from exc


def _map_values(value: object, mapping: Callable[[str], str]) -> object:
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str | bytes)):
        return [mapping(str(item)) for item in value if str(item)]  # type: ignore[union-attr]
    return mapping(str(value)) if value not in (None, "") else value


def _shifted(element: DataElement, days: int) -> object:
    vr = element.VR
    if vr == "TM":
        return element.value  # whole-day offsets: the time of day is not an identifier on its own
    shift = shift_date if vr == "DA" else shift_datetime if vr == "DT" else None
    if shift is None:
        return None  # a "date" attribute of an unexpected VR: emptied rather than kept
    values = element.value if element.VM > 1 else [element.value]
    shifted = [shift(str(value), days) for value in values if value not in (None, "")]
    if any(value is None for value in shifted):
        return None  # a value that is not a date may be anything: emptied
    return shifted if element.VM > 1 else (shifted[0] if shifted else element.value)


def _dummy(vr: str) -> object:
    if vr in _DUMMIES:
        return _DUMMIES[vr]
    if vr in _NUMERIC:
        return 0
    if vr in _BINARY or vr == "SQ":
        return b"" if vr != "SQ" else Sequence()
    return DUMMY_TEXT[: _MAX_LENGTH.get(vr, 64)]


def read_dicom(source: Path) -> Dataset:
    try:
        return pydicom.dcmread(source)
    except InvalidDicomError:
        try:
            dataset = pydicom.dcmread(source, force=True)
        except Exception as exc:
            raise DeidentificationError(f"{source.name} is not a readable DICOM file: {exc}") from exc
        if "SOPInstanceUID" not in dataset:
            raise DeidentificationError(f"{source.name} is not a DICOM instance") from None
        return dataset
    except Exception as exc:
        raise DeidentificationError(f"{source.name} is not a readable DICOM file: {exc}") from exc
