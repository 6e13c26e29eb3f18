"""InstanceNumber of medlake's SRs: 1, 2, 3 ... within each SR series, in the order SRs are first stored.

An SR series holds one SR per classified image of a study (per model identity). Copying the
source image's InstanceNumber gave duplicates (1,1,1,1,1,1,2,3 in one series); numbering by
position in a run would collide with SRs stored by an earlier run of the same study. So the
numbers continue what the PACS already holds: before the first SR of a series is numbered, the
series' existing SRs are read from Orthanc (one ``/tools/find`` per series), an SR that is
already there keeps its number (its UID is deterministic, so re-running rebuilds the same
instance and stores nothing new), and each new SR takes the next number in the caller's order.

Numbers are assigned in the process that talks to Orthanc, before SRs are built (in parallel
workers, possibly); two medlake processes storing into the same study at the same moment could
both take the same next number (the SRs stay distinct: only the display order is ambiguous).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx
from pydicom.dataset import Dataset

from medlake.errors import OrthancError
from medlake.pacs.model.weights import ModelIdentity
from medlake.pacs.orthanc.client import OrthancClient
from medlake.pacs.sr.builder import sr_instance_uid, sr_series_uid

SeriesLookup = Callable[[str], Mapping[str, int]]


def orthanc_series_lookup(client: OrthancClient) -> SeriesLookup:
    """SOP Instance UID -> InstanceNumber of the instances Orthanc holds in a series (by its UID)."""

    def lookup(series_instance_uid: str) -> dict[str, int]:
        query = {"Level": "Instance", "Query": {"SeriesInstanceUID": series_instance_uid}, "Expand": True}
        try:
            response = client.api.post_tools_find(json=query)
        except httpx.TransportError as exc:
            raise OrthancError(f"cannot reach Orthanc at {client.settings.url} (POST /tools/find): {exc}") from exc
        if response.status_code >= 400:
            raise OrthancError(f"Orthanc POST /tools/find failed: HTTP {response.status_code}: {response.text[:200]}")
        numbers: dict[str, int] = {}
        for instance in response.json():
            tags = instance.get("MainDicomTags", {})
            try:
                numbers[str(tags["SOPInstanceUID"])] = int(str(tags.get("InstanceNumber", "0")).strip() or 0)
            except (KeyError, ValueError):
                continue
        return numbers

    return lookup


class SrInstanceNumbers:
    """Hands out InstanceNumbers per SR series; see the module docstring."""

    def __init__(self, lookup: SeriesLookup) -> None:
        self._lookup = lookup
        self._series: dict[str, dict[str, int]] = {}

    @classmethod
    def from_orthanc(cls, client: OrthancClient) -> SrInstanceNumbers:
        return cls(orthanc_series_lookup(client))

    def number(self, series_instance_uid: str, sop_instance_uid: str) -> int:
        known = self._series.get(series_instance_uid)
        if known is None:
            known = self._series[series_instance_uid] = dict(self._lookup(series_instance_uid))
        if sop_instance_uid not in known:
            known[sop_instance_uid] = max(known.values(), default=0) + 1
        return known[sop_instance_uid]

    def for_source(self, source: Dataset, model: ModelIdentity) -> int:
        """The InstanceNumber of the SR that ``build_sr(source, ..., model)`` makes."""
        return self.number(
            sr_series_uid(str(source.StudyInstanceUID), model), sr_instance_uid(str(source.SOPInstanceUID), model)
        )
