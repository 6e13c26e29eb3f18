"""What happens to each attribute: the PS3.15 table resolved for the options medlake declares.

The standard's Table E.1-1 (:mod:`.ps315_table`) gives a Basic Profile action per attribute and
per option. medlake applies the Basic Profile with two options:

* Retain Longitudinal Temporal Information with Modified Dates: every attribute whose option
  column says ``C`` is shifted by the patient's offset (:data:`Action.SHIFT`);
* Clean Descriptors: an attribute whose option column says ``C`` is kept only when its value is
  provably free of identifiers (:mod:`.descriptors`), else it gets its Basic Profile action.

Where the table lets the de-identifier choose (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``),
medlake takes the choice that keeps the file valid for every IOD without reading the IOD: ``Z``
for ``X/Z`` (a Type 2 attribute must stay present), ``D`` for the rest (a Type 1 one must keep a
value), and ``U`` for ``X/Z/U*`` (sequences of references: their UIDs are remapped).

Attributes the table does not list follow medlake's stricter rules (:func:`unlisted_action`):
private attributes, curves (50xx) and whole overlay groups (60xx) are removed; person names are
emptied; free-text VRs (LT, ST, UT, UC) are removed; an instance UID that is not a registered
DICOM UID is remapped; a date is shifted; an attribute unknown to the data dictionary is removed.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache

from pydicom.datadict import dictionary_has_tag
from pydicom.tag import BaseTag
from pydicom.uid import UID_dictionary

from medlake.dataset.deid import ps315_table


class Action(StrEnum):
    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    UID = "U"
    KEEP = "K"
    SHIFT = "shift"  # Retain Longitudinal Temporal Information with Modified Dates
    CLEAN = "clean"  # Clean Descriptors: keep if provably clean, else the basic action
    RECURSE = "recurse"  # a sequence whose items are de-identified attribute by attribute


_CHOICES = {"X/Z": Action.EMPTY, "X/D": Action.DUMMY, "Z/D": Action.DUMMY, "X/Z/D": Action.DUMMY, "X/Z/U*": Action.UID}
FREE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UC"})


def basic_action(code: str) -> Action:
    """The Basic Profile action for one table cell (a choice resolved as the module says)."""
    return _CHOICES.get(code) or Action(code)


Entry = tuple[str, Action, bool, bool]  # name, basic action, Clean Descriptors applies, Modified Dates applies


@cache
def _table() -> tuple[dict[int, Entry], tuple[tuple[str, Entry], ...]]:
    exact: dict[int, Entry] = {}
    patterns = []
    for tag, name, basic, clean_descriptor, modified_dates in ps315_table.ROWS:
        entry = (name, basic_action(basic), clean_descriptor == "C", modified_dates == "C")
        if "x" in tag:
            patterns.append((tag, entry))
        else:
            exact[int(tag, 16)] = entry
    return exact, tuple(patterns)


def table_entry(tag: int) -> Entry | None:
    """(name, basic action, Clean Descriptors applies, Modified Dates applies), or None if unlisted."""
    exact, patterns = _table()
    if tag in exact:
        return exact[tag]
    text = f"{tag:08x}"
    for pattern, entry in patterns:
        if all(p == "x" or p == c for p, c in zip(pattern, text, strict=True)):
            return entry
    return None


def is_removed_group(tag: BaseTag) -> bool:
    """Private attributes, curves (50xx, retired) and overlays (60xx): removed whole, not per element.

    The table lists only Overlay Data and Overlay Comments; an overlay's description, label and
    geometry without its data are useless and may still carry text, so the whole group goes.
    """
    group = tag.group
    return tag.is_private or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF


def unlisted_action(tag: BaseTag, vr: str, value: object) -> Action:
    """medlake's rule for an attribute the table does not list (see the module docstring)."""
    if vr == "SQ":
        return Action.RECURSE
    if not dictionary_has_tag(tag):
        return Action.REMOVE  # an attribute nobody can say is safe
    if vr == "PN":
        return Action.EMPTY
    if vr in FREE_TEXT_VRS:
        return Action.REMOVE
    if vr == "UI":
        values = value if isinstance(value, list | tuple) else [value]
        registered = all(str(item) in UID_dictionary for item in values if item)
        return Action.KEEP if registered else Action.UID
    if vr in ("DA", "DT"):
        return Action.SHIFT
    return Action.KEEP


def action_for(tag: BaseTag, vr: str, value: object) -> tuple[Action, Action | None]:
    """(action, fallback): the fallback is the basic action when a Clean Descriptors value is not clean."""
    entry = table_entry(int(tag))
    if entry is None:
        return unlisted_action(tag, vr, value), None
    _, basic, clean_descriptor, modified_dates = entry
    if vr == "SQ":
        # X removes the sequence, Z empties it; every other action keeps it and recurses into it
        # (D on Content Sequence, U on the reference sequences, K), each item by the same table.
        return (basic if basic in (Action.REMOVE, Action.EMPTY) else Action.RECURSE), None
    if modified_dates:
        return Action.SHIFT, None
    if clean_descriptor:
        return Action.CLEAN, basic
    return basic, None
