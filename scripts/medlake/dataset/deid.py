"""De-identification of exported DICOMs: DICOM PS3.15 Annex E basic profile, with dicognito.

What happens to each exported DICOM (the pixels are not touched):

* dicognito (https://github.com/blairconrad/dicognito) replaces every person name, the patient
  and other identifiers (PatientID, AccessionNumber, StudyID, ...), addresses, institution and
  station names, and every UID except class and transfer syntax UIDs; it shifts every date and
  time (birth date included) by one offset per lake, so intervals between a patient's studies
  survive (the profile's *Retain Longitudinal Temporal Information with Modified Dates* option);
* private tags are removed (the profile keeps none without the *Retain Safe Private* option);
* PatientIdentityRemoved = YES, DeidentificationMethod, and a DeidentificationMethodCodeSequence
  naming the profile (DCM 113100) and the modified-dates option (DCM 113107) are set;
* an image whose BurnedInAnnotation is YES is not exported: its pixels may show the name.

The replacements are keyed: dicognito's seed is an HMAC of the lake's pseudonymisation key, so
the same source UID or ID maps to the same replacement in every file, worker and export of one
lake (studies and series still group, and a later export agrees with an earlier one), while
without the key the mapping cannot be recomputed from a known original.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medlake.errors import DatasetError

PROFILE = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile, Retain Longitudinal Modified Dates"
LIBRARY = "dicognito"
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)


class DeidentificationError(DatasetError):
    """One DICOM cannot be de-identified (unreadable, or pixels that may carry burned-in text)."""


class BurnedInAnnotationError(DeidentificationError):
    """The image says its pixels carry burned-in annotation: not exported de-identified."""


def library_version() -> str:
    from importlib.metadata import version

    return version(LIBRARY)


def anonymizer_seed(pseudonym_key: bytes) -> str:
    """dicognito's seed for one lake: secret (derived from the lake key), stable across exports."""
    return hmac.new(pseudonym_key, b"medlake-dicognito-seed-v1", hashlib.sha256).hexdigest()


class Deidentifier:
    """Rewrites DICOM files de-identified; one instance per process (dicognito keeps caches)."""

    def __init__(self, seed: str) -> None:
        from dicognito.anonymizer import Anonymizer
        from dicognito.randomizer import Randomizer
        from dicognito.uianonymizer import UIAnonymizer

        class UuidDerivedUIAnonymizer(UIAnonymizer):
            # dicognito's own UIDs are "2.1<digits>", under an arc that does not exist (dciodvfy
            # flags every one); the same keyed 128-bit number under 2.25 is a valid UUID-derived UID.
            def _new_ui(self, ui: str) -> str:
                return f"2.25.{self._randomizer.to_int(ui)}"

        self._anonymizer = Anonymizer(seed=seed)
        self._anonymizer.add_element_handler(UuidDerivedUIAnonymizer(Randomizer(seed)))

    def deidentify(self, dataset: Dataset) -> Dataset:
        if str(dataset.get("BurnedInAnnotation", "")).upper() == "YES":
            raise BurnedInAnnotationError("BurnedInAnnotation is YES: the pixels may show identifiers")
        dataset.remove_private_tags()
        self._anonymizer.anonymize(dataset)
        dataset.PatientIdentityRemoved = "YES"
        codes = []
        for value, meaning in _METHOD_CODES:
            code = Dataset()
            code.CodeValue = value
            code.CodingSchemeDesignator = "DCM"
            code.CodeMeaning = meaning
            codes.append(code)
        dataset.DeidentificationMethodCodeSequence = codes
        return dataset

    def deidentify_file(self, source: Path, destination: Path) -> None:
        """Read ``source``, de-identify it, write ``destination`` atomically (same encoding)."""
        dataset = _read(source)
        self.deidentify(dataset)
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=destination.parent)
        os.close(fd)
        try:
            has_meta = "TransferSyntaxUID" in getattr(dataset, "file_meta", {})
            # A file that came without File Meta (a bare dataset) is written back the same way.
            dataset.save_as(tmp_name, enforce_file_format=has_meta)
            os.replace(tmp_name, destination)
        except Exception as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise DeidentificationError(f"cannot write the de-identified copy of {source.name}: {exc}") from exc


def _read(source: Path) -> Dataset:
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
