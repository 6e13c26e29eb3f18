"""De-identification of exported DICOMs: the PS3.15 Basic Application Level Confidentiality Profile.

medlake applies the standard's own action table (Table E.1-1, generated into :mod:`.ps315_table`)
rather than dicognito, which the export used before. dicognito cannot be configured to do what
the profile asks: it changes a fixed list of attributes (names, IDs, addresses, institutions,
UIDs, dates) and leaves the rest of the table untouched (descriptions, comments, patient
history, protocol names, device serial numbers, patient age/size/weight, ethnic group, overlays,
the file meta's AE titles), and its date shift is one offset per seed, i.e. per lake, which
one known date undoes for every patient. Each attribute's action here is tested element by
element against the table (tests/python/test_deid_profile.py).

* :mod:`.actions`: the table resolved for the options declared (Retain Longitudinal Temporal
  Information with Modified Dates, Clean Descriptors) and medlake's rules for unlisted attributes;
* :mod:`.descriptors`: the proof a kept descriptor names nobody;
* :mod:`.keys`: keyed UIDs and the per-patient date offset, from the lake's key;
* :mod:`.profile`: :class:`Deidentifier`, which applies all of it to a dataset or a file.
"""

from __future__ import annotations

from medlake.dataset.deid.keys import Keys, Subject
from medlake.dataset.deid.profile import (
    METHOD_CODES,
    PROFILE,
    BurnedInAnnotationError,
    DeidentificationError,
    Deidentifier,
    read_dicom,
)
from medlake.dataset.deid.ps315_table import EDITION, SOURCE

LIBRARY = "medlake.dataset.deid"
OPTIONS = tuple(meaning for code, meaning in METHOD_CODES if code != "113100")

__all__ = [
    "EDITION",
    "LIBRARY",
    "METHOD_CODES",
    "OPTIONS",
    "PROFILE",
    "SOURCE",
    "BurnedInAnnotationError",
    "DeidentificationError",
    "Deidentifier",
    "Keys",
    "Subject",
    "read_dicom",
]
