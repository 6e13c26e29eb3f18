"""Who may send images to medlake's Orthanc over DICOM: the modality allow-list and its config.

DICOM has no passwords: a C-STORE SCU is identified by its calling AE title and the IP address
it connects from. Orthanc 1.10 listens on every interface, so ``medlake orthanc start
--dicom-port P`` only accepts associations from the modalities listed here, matched on both:

* ``DicomAlwaysAllowStore/Echo/Find/FindWorklist/Get/Move: false``: an AE title that is not
  listed is refused at association time (A-ASSOCIATE-RJ), whatever it asks for;
* ``DicomCheckModalityHost: true``: a listed AE title is accepted only from its listed IP;
* ``DicomCheckCalledAet: true``: the sender must call medlake's own AE title;
* ``StrictAetComparison: true``: AE titles compare case-sensitively, as DICOM defines them;
* per modality, only C-STORE and C-ECHO (to let a technician verify the link) are allowed;
  C-FIND/C-MOVE/C-GET/worklist/storage commitment are refused: modalities send, they do not
  query or retrieve what others sent (viewers use Orthanc's authenticated HTTP API).

A modality is written ``AET@HOST:PORT`` (``--modality``, repeatable, or one per line in a
``--modalities-file``; ``#`` starts a comment). HOST must be an IP address, because Orthanc
compares it with the peer's address as a string; it defaults to 127.0.0.1, PORT (where
Orthanc would reach the modality back; never used for reception) to 104. With no modality
listed, only ``MEDLAKE_SCU@127.0.0.1`` may send: local tools and tests on this machine.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medlake.errors import OrthancError

ORTHANC_AET = "MEDLAKE"
LOCAL_SENDER_AET = "MEDLAKE_SCU"
LOOPBACK = "127.0.0.1"
DEFAULT_MODALITY_PORT = 104
_AET_MAX = 16
_SPEC = re.compile(r"^(?P<aet>[^@]+?)(?:@(?P<host>\[[^\]]+\]|[^:@]+)(?::(?P<port>\d+))?)?$")


class ModalityConfigError(OrthancError):
    """A modality entry that cannot be used (bad AE title, host or port)."""


def check_aet(aet: str, what: str = "AE title") -> str:
    """A valid AE title (PS3.5: 1-16 characters of the default repertoire, no backslash, not all spaces)."""
    if not aet.strip():
        raise ModalityConfigError(f"{what} is empty")
    if len(aet) > _AET_MAX:
        raise ModalityConfigError(f"{what} {aet!r} is longer than {_AET_MAX} characters")
    if any(ch == "\\" or not (" " <= ch <= "~") for ch in aet):
        raise ModalityConfigError(f"{what} {aet!r} may hold only printable ASCII characters and no backslash")
    if aet != aet.strip():
        raise ModalityConfigError(f"{what} {aet!r} has leading or trailing spaces")
    return aet


@dataclass(frozen=True)
class Modality:
    """One sender allowed to C-STORE: its AE title, the IP it connects from, and its own port."""

    aet: str
    host: str = LOOPBACK
    port: int = DEFAULT_MODALITY_PORT

    @property
    def spec(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.aet}@{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    def orthanc_entry(self) -> dict:
        return {
            "AET": self.aet,
            "Host": self.host,
            "Port": self.port,
            "AllowEcho": True,
            "AllowStore": True,
            "AllowFind": False,
            "AllowFindWorklist": False,
            "AllowGet": False,
            "AllowMove": False,
            "AllowStorageCommitment": False,
        }

    def to_dict(self) -> dict:
        return {"aet": self.aet, "host": self.host, "port": self.port}


def parse_modality(spec: str) -> Modality:
    """``AET``, ``AET@HOST`` or ``AET@HOST:PORT`` (HOST an IPv4 address, ``[IPv6]`` or ``localhost``)."""
    match = _SPEC.match(spec.strip())
    if match is None:
        raise ModalityConfigError(f"modality {spec!r}: expected AET@HOST:PORT, e.g. CR_ROOM1@10.1.2.3:104")
    aet = check_aet(match["aet"], f"modality {spec!r}: AE title")
    host = (match["host"] or LOOPBACK).strip("[]")
    if host == "localhost":
        host = LOOPBACK
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ModalityConfigError(
            f"modality {spec!r}: host {host!r} is not an IP address (Orthanc compares the sender's IP, not names)"
        ) from None
    port = int(match["port"]) if match["port"] else DEFAULT_MODALITY_PORT
    if not 1 <= port <= 65535:
        raise ModalityConfigError(f"modality {spec!r}: port {port} is out of range")
    return Modality(aet, host, port)


def read_modalities_file(path: Path) -> list[Modality]:
    """One ``AET@HOST:PORT`` per line; blank lines and ``#`` comments ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ModalityConfigError(f"cannot read modalities file {path}: {exc.strerror or exc}") from exc
    modalities = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            modalities.append(parse_modality(text))
        except ModalityConfigError as exc:
            raise ModalityConfigError(f"{path}:{number}: {exc}") from None
    return modalities


def allow_list(specs: Iterable[str] = (), files: Iterable[Path] = ()) -> tuple[Modality, ...]:
    """The modalities from flags and files, de-duplicated in order; the local sender when none."""
    found: list[Modality] = [parse_modality(s) for s in specs]
    for path in files:
        found.extend(read_modalities_file(path))
    unique = tuple(dict.fromkeys(found))
    return unique or (Modality(LOCAL_SENDER_AET),)


def reception_config(aet: str, dicom_port: int | None, modalities: Sequence[Modality]) -> dict:
    """The Orthanc configuration keys for DICOM reception (server off when ``dicom_port`` is None)."""
    check_aet(aet, "Orthanc's AE title")
    # Orthanc's entry names allow only [A-Za-z0-9_-]: a position keeps them unique, the AE title readable.
    entries = {
        f"sender{number}-{re.sub(r'[^A-Za-z0-9_-]', '_', m.aet)}": m.orthanc_entry()
        for number, m in enumerate(modalities if dicom_port is not None else (), start=1)
    }
    return {
        "DicomServerEnabled": dicom_port is not None,
        "DicomPort": dicom_port or 4242,
        "DicomAet": aet,
        "DicomCheckCalledAet": True,
        "DicomCheckModalityHost": True,
        "StrictAetComparison": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowFindWorklist": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomModalitiesInDatabase": False,  # the allow-list is the generated config, rewritten on each start
        "DicomModalities": entries,
        "UnknownSopClassAccepted": False,
    }
