"""The credentials of a medlake-started Orthanc: one random password per storage, kept 0600.

``medlake orthanc start`` never falls back to a well-known password. On the first start of a
storage directory it writes ``STORAGE/credentials.json`` (mode 0600, in a 0700 directory) with
user ``medlake`` and a random 32-byte password; every later start of that storage, and every
medlake client (``pacs run``, ``pacs watch``, ``orthanc status``), reads it from there.

Where a client looks, first match wins:

1. ``ORTHANC_PASSWORD`` (and ``ORTHANC_USERNAME``, default ``medlake``) from the environment:
   for an Orthanc medlake did not start, or a password managed elsewhere;
2. ``credentials.json`` in the storage directory: ``$MEDLAKE_ORTHANC_STORAGE``, else the
   default ``data/orthanc`` (the same default as ``medlake orthanc start``).

A server started with ``ORTHANC_PASSWORD`` set registers that password instead (nothing is
written), so server and clients always agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from medlake.errors import OrthancError

DEFAULT_STORAGE = Path("data/orthanc")
CREDENTIALS_FILE = "credentials.json"
STORAGE_ENV = "MEDLAKE_ORTHANC_STORAGE"
USERNAME_ENV = "ORTHANC_USERNAME"
PASSWORD_ENV = "ORTHANC_PASSWORD"
DEFAULT_USERNAME = "medlake"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


@dataclass(frozen=True)
class Credentials:
    """A user and password for Orthanc's HTTP basic auth, and where they came from."""

    username: str
    password: str
    source: str

    def __repr__(self) -> str:  # never print the password by accident
        return f"Credentials(username={self.username!r}, password='***', source={self.source!r})"


def default_storage() -> Path:
    """``$MEDLAKE_ORTHANC_STORAGE`` or ``data/orthanc``."""
    configured = os.environ.get(STORAGE_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_STORAGE


def credentials_path(storage: Path) -> Path:
    return Path(storage) / CREDENTIALS_FILE


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make ``path`` itself 0700, also when it already existed."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)


def from_environment() -> Credentials | None:
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        return None
    username = os.environ.get(USERNAME_ENV) or DEFAULT_USERNAME
    return Credentials(username, password, f"environment ({USERNAME_ENV}/{PASSWORD_ENV})")


def read_storage_credentials(storage: Path) -> Credentials | None:
    """The storage's credentials file, or None when it does not exist (or cannot be read)."""
    path = credentials_path(storage)
    try:
        payload = json.loads(path.read_text())
        username, password = str(payload["username"]), str(payload["password"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OrthancError(f"cannot read Orthanc credentials from {path}: {exc}") from exc
    if not password:
        raise OrthancError(f"{path} holds an empty password; delete it to generate a new one")
    return Credentials(username, password, str(path))


def create_storage_credentials(storage: Path) -> Credentials:
    """Read the storage's credentials, generating them (0600, exclusive create) if absent."""
    existing = read_storage_credentials(storage)
    if existing is not None:
        return existing
    make_private_dir(Path(storage))
    path = credentials_path(storage)
    payload = {"username": os.environ.get(USERNAME_ENV) or DEFAULT_USERNAME, "password": secrets.token_urlsafe(32)}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:  # another process created it first: use theirs
        return create_storage_credentials(storage)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
            handle.write("\n")
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return Credentials(payload["username"], payload["password"], str(path))


def resolve(storage: Path | None = None, *, create: bool = False) -> Credentials | None:
    """The credentials a client or server of ``storage`` uses (see the module docstring).

    ``create=True`` (the server's first start) generates the storage's file when neither the
    environment nor the file provides a password; otherwise a missing file gives None.
    """
    env = from_environment()
    if env is not None:
        return env
    storage = Path(storage) if storage is not None else default_storage()
    if create:
        return create_storage_credentials(storage)
    return read_storage_credentials(storage)
