"""The lake's content-addressed object store: every delivered image or PDF, kept once by its bytes.

Layout::

    LAKE/objects/<first 2 hex of sha256>/<sha256>

An object's name is the SHA-256 of its bytes, so identical bytes are stored once however often
(and under whatever names) they are delivered, and re-landing a delivery stores nothing new.
A delivery file is *hard-linked* into the store when the delivery and the lake share a file
system (no bytes copied; deleting the delivery leaves the object), and copied otherwise. A copy
is written to a hidden temporary name beside its final place, checked against the expected
SHA-256 while it is written, and renamed into place, so a reader never sees half an object and a
file that changed between hashing and storing is refused instead of stored under a wrong name.

A hard link shares the delivery file's inode: a delivery tool that rewrites a file *in place*
would change the stored object too. Tools that write a new file and rename it (rsync, cp to a
new name, object-store downloads) are safe; :func:`verify_object` re-hashes an object on demand.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from medlake.errors import FileRefused, LakeError
from medlake.vocab import QuarantineReason

if TYPE_CHECKING:
    from medlake.lake.files import FileDigest

OBJECTS_DIR = "objects"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COPY_BLOCK = 1 << 20
# link() errors that mean "cannot link here" (other file system, no hard links, too many links).
_LINK_UNSUPPORTED = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES})


class ObjectStoreError(LakeError):
    """An object cannot be stored or read (bad digest, bytes changed while storing, disk error)."""


class SourceChangedError(ObjectStoreError):
    """The delivered file changed (or was replaced) between hashing and storing: land it again later."""


class StoreMethod(StrEnum):
    """How an object reached the store."""

    LINKED = "linked"  # hard link to the delivered file (same file system)
    COPIED = "copied"  # bytes copied (other file system, or links not allowed)
    EXISTING = "existing"  # identical bytes were already stored: nothing written


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object in the store: its digest, its path relative to the lake, and how it got there."""

    sha256: str
    relative_path: str
    size_bytes: int
    method: StoreMethod

    @property
    def is_new(self) -> bool:
        return self.method is not StoreMethod.EXISTING


def object_relative_path(sha256: str) -> str:
    """``objects/<2 hex>/<sha256>``: where the object with this digest lives, relative to the lake."""
    if not _SHA256.match(sha256):
        raise ObjectStoreError(f"not a lower-case hex SHA-256 digest: {sha256!r}")
    return f"{OBJECTS_DIR}/{sha256[:2]}/{sha256}"


def object_path(lake: Path, sha256: str) -> Path:
    return Path(lake) / object_relative_path(sha256)


def has_object(lake: Path, sha256: str) -> bool:
    return object_path(lake, sha256).is_file()


def store_file(
    lake: Path, source: Path, sha256: str, *, size_bytes: int | None = None, fd: int | None = None
) -> StoredObject:
    """Store ``source`` (whose bytes hash to ``sha256``) in ``lake``'s object store, once.

    ``sha256`` is the digest the caller already computed while reading the file (landing hashes
    every file once); a copy re-checks it, a link checks the size (``size_bytes``, when given).
    With ``fd`` (the descriptor landing opened and checked against the delivery root), the link
    must be to that very file (same inode) and a copy reads from it, so a path swapped after the
    check is never stored.
    """
    relative = object_relative_path(sha256)
    target = Path(lake) / relative
    if target.is_file():
        return StoredObject(sha256, relative, target.stat().st_size, StoreMethod.EXISTING)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ObjectStoreError(f"cannot create {target.parent}: {exc.strerror or exc}") from exc
    linked = _link(Path(source), target, size_bytes, fd)
    if linked is not None:
        return StoredObject(sha256, relative, linked, StoreMethod.LINKED)
    size = _copy_checked(Path(source), target, sha256, fd)
    return StoredObject(sha256, relative, size, StoreMethod.COPIED)


def store_bytes(lake: Path, data: bytes) -> StoredObject:
    """Store bytes already in memory (e.g. an image fetched from the PACS); returns the object."""
    sha256 = hashlib.sha256(data).hexdigest()
    relative = object_relative_path(sha256)
    target = Path(lake) / relative
    if target.is_file():
        return StoredObject(sha256, relative, len(data), StoreMethod.EXISTING)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return StoredObject(sha256, relative, len(data), StoreMethod.COPIED)


def store_original(lake: str | Path, root: str, relpath: str, handle: BinaryIO, digest: FileDigest) -> StoredObject:
    """Keep one landed delivery file (open as ``handle``, hashed as ``digest``) in the lake's store.

    The landing call site: a file that changed after it was hashed is refused (quarantined as
    unreadable and retried by the next run), never stored under a digest that is not its own.
    """
    try:
        return store_file(
            Path(lake), Path(root, relpath), digest.sha256, size_bytes=digest.size_bytes, fd=handle.fileno()
        )
    except SourceChangedError as exc:
        raise FileRefused(QuarantineReason.UNREADABLE_FILE, str(exc)) from exc


def verify_object(lake: Path, sha256: str) -> bool:
    """Re-hash a stored object: True when its bytes still match its name."""
    path = object_path(lake, sha256)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(_COPY_BLOCK):
                digest.update(block)
    except FileNotFoundError:
        return False
    return digest.hexdigest() == sha256


def link_or_copy(source: Path, destination: Path) -> StoreMethod:
    """Put ``source`` at ``destination`` by hard link when possible, else by an atomic copy.

    Used to hand objects out of the store (dataset exports); an existing destination is replaced.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=destination.parent)
    os.close(fd)
    os.unlink(tmp_name)
    try:
        try:
            os.link(source, tmp_name)
            method = StoreMethod.LINKED
        except OSError as exc:
            if exc.errno not in _LINK_UNSUPPORTED:
                raise
            _copy_into(source, tmp_name)
            method = StoreMethod.COPIED
        os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return method


def _link(source: Path, target: Path, size_bytes: int | None, fd: int | None) -> int | None:
    """Hard-link ``source`` as ``target``; the linked size, or None when linking is not possible here."""
    try:
        # A delivered symlink (already checked to stay inside the delivery) is stored as the file
        # it points to, never as a link that could dangle later: os.link on Linux would link the
        # symlink itself, whatever follow_symlinks says.
        os.link(os.path.realpath(source), target)
    except FileExistsError:
        return target.stat().st_size  # stored meanwhile by another worker: same name, same bytes
    except OSError as exc:
        if exc.errno in _LINK_UNSUPPORTED:
            return None
        raise ObjectStoreError(f"cannot store {source}: {exc.strerror or exc}") from exc
    linked = target.stat()
    if fd is not None:
        opened = os.fstat(fd)
        if (linked.st_dev, linked.st_ino) != (opened.st_dev, opened.st_ino):
            target.unlink(missing_ok=True)
            raise SourceChangedError(f"{source} was replaced while it was landed")
    if size_bytes is not None and linked.st_size != size_bytes:
        target.unlink(missing_ok=True)
        raise SourceChangedError(
            f"{source} changed while it was landed ({size_bytes} bytes hashed, now {linked.st_size})"
        )
    return linked.st_size


def _copy_checked(source: Path, target: Path, sha256: str, fd: int | None) -> int:
    fd_out, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd_out, "wb") as writer:
            for block in _blocks(source, fd):
                digest.update(block)
                writer.write(block)
                size += len(block)
        if digest.hexdigest() != sha256:
            raise SourceChangedError(f"{source} changed while it was landed (its SHA-256 is no longer {sha256})")
        os.replace(tmp_name, target)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise ObjectStoreError(f"cannot store {source}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return size


def _blocks(source: Path, fd: int | None) -> Iterator[bytes]:
    """The file's bytes from the start: from the already-open descriptor when given (pread), else by path."""
    if fd is not None:
        offset = 0
        while block := os.pread(fd, _COPY_BLOCK, offset):
            yield block
            offset += len(block)
        return
    with open(source, "rb") as reader:
        while block := reader.read(_COPY_BLOCK):
            yield block


def _copy_into(source: Path, destination: str) -> None:
    with open(source, "rb") as reader, open(destination, "wb") as writer:
        while block := reader.read(_COPY_BLOCK):
            writer.write(block)
