"""Files of a delivery: ONE walker, ONE reader with ONE symlink policy, ONE hasher.

Deliveries come from outside the hospital's trust boundary, so every byte medlake reads
from one (``land``, ``scan-dicom``, ``pacs run``) goes through :class:`DeliveryRoot`:

* **Walking** (:meth:`DeliveryRoot.walk`) lists regular files and symlinks to files, sorted,
  as POSIX paths relative to the root. Symlinked directories are not followed (no loops, no
  escape); FIFOs, sockets and devices are listed apart as not regular files and never opened
  (a FIFO would block). A dangling symlink is listed like a file, so reading it fails and the
  caller quarantines it (``unreadable_file``) instead of silently missing it.
* **Reading** (:meth:`DeliveryRoot.open`, :meth:`read_bytes`, :meth:`hash_file`) opens only a
  regular file that *resolves inside the root*. The usual file is opened relative to its
  directory's descriptor, every path component with ``O_NOFOLLOW`` (directories opened once
  per root), so no symlink is followed and one swapped in after the listing cannot escape
  either; only a symlink is followed, and then the kernel's view of the opened descriptor
  (``/proc/self/fd``, else ``realpath``) must lie inside the root. Opens are non-blocking and
  the result must be a regular file (a FIFO swapped in is refused, not waited on). A file resolving outside the
  root is refused with ``outside_delivery_root`` before a single byte is read (no excerpt,
  no sha256). A name that is not valid UTF-8 is refused with ``file_name_not_utf8`` (it
  could not be recorded as lineage). Every refusal is a :class:`FileRefused` carrying the
  quarantine reason code; nothing here raises a bare ``OSError``.
* **Hashing** (:func:`hash_stream`): sha256 (and md5 on request, for Orthanc's
  ``/instances`` checks) of a file in 1 MiB blocks, keeping the first bytes for sniffing.

Hard links are not detectable by path: a delivery that hard-links a host file needs write
access to the host's file system, which is outside this threat model.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medlake.errors import FileRefused, LandingError
from medlake.vocab import QuarantineReason

HEAD_BYTES = 4096  # enough for every magic number and a first look at a bare DICOM dataset
_HASH_BLOCK = 1 << 20
_READ_SIZE = 1 << 18
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NO_FOLLOW | getattr(os, "O_CLOEXEC", 0)
# What open(O_NOFOLLOW) says about a symlink (Linux: ELOOP; BSDs: EMLINK).
_SYMLINK_ERRNOS = {errno.ELOOP, errno.EMLINK}
_PROC_FD = "/proc/self/fd"
_HAS_PROC_FD = os.path.isdir(_PROC_FD)


@dataclass(frozen=True, slots=True)
class FileDigest:
    """What one pass over a file's bytes gives: size, sha256 (md5 on request), first bytes."""

    size_bytes: int
    sha256: str
    head: bytes
    md5: str | None = None


@dataclass(frozen=True)
class Listing:
    """A walk's result: files to read (sorted relative paths) and entries that are not regular files."""

    files: list[str]
    not_files: list[str]  # "<relpath> (not a regular file)": listed for the summary, never opened


def display_path(relpath: str) -> str:
    """A relative path as lineage text: undecodable bytes of a file name shown as ``\\xNN``."""
    try:
        relpath.encode("utf-8")
        return relpath
    except UnicodeEncodeError:
        return os.fsencode(relpath).decode("utf-8", errors="backslashreplace")


class DeliveryRoot:
    """A directory whose files are read only under medlake's symlink policy (see the module doc)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._real = os.path.realpath(self.path)
        self._real_prefix = self._real.rstrip("/") + "/"
        self._dir_fds: dict[str, int | None] = {}  # relative directory -> its descriptor (None: via a symlink)
        self._dir_lock = threading.RLock()  # re-entered: a directory opens its parent first
        self._closer = weakref.finalize(self, _close_all, self._dir_fds)

    def close(self) -> None:
        """Close the directory descriptors kept for reading (also done when the object is collected)."""
        self._closer()

    def __enter__(self) -> DeliveryRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DeliveryRoot({self.path!r})"

    # -- walking --

    def walk(self, subdir: str = "") -> Listing:
        """Every file under ``root/subdir`` (recursive), sorted POSIX paths relative to the root."""
        found: list[str] = []
        not_files: list[str] = []
        start = f"{self.path}/{subdir}" if subdir else self.path
        pending = [(start, f"{subdir}/" if subdir else "")]
        while pending:
            directory, prefix = pending.pop()
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append((entry.path, f"{prefix}{entry.name}/"))
                        elif entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path)):
                            found.append(prefix + entry.name)
                        elif not entry.is_dir():
                            not_files.append(f"{display_path(prefix + entry.name)} (not a regular file)")
            except OSError as exc:
                raise LandingError(f"cannot list {directory}: {exc.strerror or exc}") from exc
        found.sort()
        return Listing(found, not_files)

    # -- reading --

    def open_fd(self, relpath: str) -> int:
        """An open descriptor on ``relpath`` if it is a regular file resolving inside the root."""
        try:
            relpath.encode("utf-8")
        except UnicodeEncodeError:
            raise FileRefused(QuarantineReason.FILE_NAME_NOT_UTF8, "file name is not valid UTF-8: not read") from None
        directory, _, name = relpath.rpartition("/")
        dir_fd = self._dir_fd(directory)
        fd = None
        if dir_fd is not None:
            try:
                fd = os.open(name, _OPEN_FLAGS | _NO_FOLLOW, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno not in _SYMLINK_ERRNOS:
                    raise _unreadable(exc) from exc
        if fd is None:  # a symlink (or a file under a symlinked directory): follow it, then check where it went
            return self._open_followed(relpath)
        try:
            _check_regular(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _dir_fd(self, directory: str) -> int | None:
        """The descriptor of a directory of the root, opened component by component without following symlinks."""
        if directory in self._dir_fds:
            return self._dir_fds[directory]
        with self._dir_lock:
            if directory not in self._dir_fds:
                parent, _, name = directory.rpartition("/")
                parent_fd = self._dir_fd(parent) if directory else None
                try:
                    if not directory:
                        fd = os.open(self.path, _DIR_FLAGS & ~_NO_FOLLOW)  # the root itself may be a symlink
                    elif parent_fd is None:
                        fd = None
                    else:
                        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
                except OSError:
                    fd = None  # a symlinked (or vanished) directory: its files take the checked path
                self._dir_fds[directory] = fd
            return self._dir_fds[directory]

    def _open_followed(self, relpath: str) -> int:
        path = f"{self.path}/{relpath}"
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise _unreadable(exc) from exc
        try:
            try:
                resolved = os.readlink(f"{_PROC_FD}/{fd}") if _HAS_PROC_FD else os.path.realpath(path)
            except OSError as exc:
                raise _unreadable(exc) from exc
            if not resolved.startswith(self._real_prefix):
                raise FileRefused(
                    QuarantineReason.OUTSIDE_DELIVERY_ROOT,
                    "resolves outside the delivery directory (a symlink out of the delivery): not read",
                )
            _check_regular(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open(self, relpath: str) -> BinaryIO:
        """:meth:`open_fd` as a binary file object (for pydicom and block-wise hashing)."""
        return os.fdopen(self.open_fd(relpath), "rb")

    def read_bytes(self, relpath: str) -> bytes:
        """A whole file's bytes with the fewest system calls (no buffered reader for a 2 KB file)."""
        fd = self.open_fd(relpath)
        try:
            data = os.read(fd, _READ_SIZE)
            if len(data) < _READ_SIZE:
                return data
            parts = [data]
            while block := os.read(fd, _READ_SIZE):
                parts.append(block)
            return b"".join(parts)
        except OSError as exc:
            raise _unreadable(exc) from exc
        finally:
            os.close(fd)

    def hash_file(self, relpath: str, *, md5: bool = False) -> FileDigest:
        """:func:`hash_stream` of one file of the delivery."""
        with self.open(relpath) as handle:
            return hash_stream(handle, md5=md5)


def _unreadable(exc: OSError) -> FileRefused:
    return FileRefused(QuarantineReason.UNREADABLE_FILE, f"cannot read file: {exc.strerror or exc}")


def _check_regular(fd: int) -> None:
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise _unreadable(exc) from exc
    if not stat.S_ISREG(mode):
        raise FileRefused(QuarantineReason.UNREADABLE_FILE, "not a regular file: not read")


def _close_all(fds: dict[str, int | None]) -> None:
    for fd in fds.values():
        if fd is not None:
            os.close(fd)
    fds.clear()


def hash_stream(handle: BinaryIO, *, md5: bool = False) -> FileDigest:
    """sha256 (and md5) of everything left in ``handle``, in blocks; keeps the first bytes."""
    digest = hashlib.sha256()
    md5_digest = hashlib.md5(usedforsecurity=False) if md5 else None
    size = 0
    head = b""
    try:
        while block := handle.read(_HASH_BLOCK):
            if not head:
                head = block[:HEAD_BYTES]
            digest.update(block)
            if md5_digest is not None:
                md5_digest.update(block)
            size += len(block)
    except OSError as exc:
        raise _unreadable(exc) from exc
    return FileDigest(size, digest.hexdigest(), head, md5_digest.hexdigest() if md5_digest else None)


def sha256_bytes(data: bytes) -> str:
    """sha256 of bytes already in memory (a JSON file read whole), as hex."""
    return hashlib.sha256(data).hexdigest()
