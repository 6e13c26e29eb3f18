"""The local Orthanc process: its generated configuration, start, stop and status.

medlake runs the Debian package's ``Orthanc`` binary (1.10.1) itself; no system service
is involved. The generated configuration keeps it local and closed:

* ``RemoteAccessAllowed: false``: Orthanc has no bind-address option (it listens on every
  interface), so this is what makes the HTTP server refuse every client not on loopback;
* ``AuthenticationEnabled: true`` with one user: a random password generated per storage on
  its first start (``credentials.json``, 0600), or ``ORTHANC_USERNAME``/``ORTHANC_PASSWORD``;
* the DICOM server is off unless ``--dicom-port`` is given, and then accepts associations only
  from the listed modalities (AE title + IP; :mod:`medlake.pacs.orthanc.reception`);
* no plugins; no WebDAV; existing instances are never overwritten (a re-upload is
  ``AlreadyStored``).

Everything lives in the storage directory, mode 0700: the index and files (``db/``),
``orthanc.json`` and ``credentials.json`` (0600: they hold the password), ``orthanc.log`` and
``orthanc.pid``. Orthanc runs with umask 077, so nothing it writes is readable by other users.
``stop`` sends SIGTERM, waits, then SIGKILLs, and only ever signals the pid it recorded when
that process is still an Orthanc.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from medlake.errors import OrthancError
from medlake.pacs.orthanc import credentials as orthanc_credentials
from medlake.pacs.orthanc.client import OrthancClient, OrthancSettings
from medlake.pacs.orthanc.credentials import PRIVATE_FILE_MODE, Credentials, make_private_dir
from medlake.pacs.orthanc.reception import ORTHANC_AET, Modality, allow_list, reception_config

DEFAULT_STORAGE = orthanc_credentials.DEFAULT_STORAGE
ORTHANC_UMASK = 0o077  # storage, index and log readable by the medlake user only
DEFAULT_BINARY = "/usr/sbin/Orthanc"
CONFIG_FILE = "orthanc.json"
LOG_FILE = "orthanc.log"
PID_FILE = "orthanc.pid"
STATUS_DOWN_EXIT = 3


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def default_port() -> int:
    url = OrthancSettings.from_env().url
    return urlparse(url).port or 8042


def orthanc_binary() -> str | None:
    """The Orthanc executable: ``$MEDLAKE_ORTHANC_BINARY``, ``/usr/sbin/Orthanc``, or on PATH."""
    configured = os.environ.get("MEDLAKE_ORTHANC_BINARY")
    if configured:
        return configured if Path(configured).exists() else None
    if Path(DEFAULT_BINARY).exists():
        return DEFAULT_BINARY
    return shutil.which("Orthanc")


def _pid_alive_as_orthanc(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return True
        if not text.strip():  # a zombie: exited, not yet reaped
            return False
        return "orthanc" in text.lower()
    return True


@dataclass(frozen=True)
class ServerStatus:
    """What ``medlake orthanc status`` reports."""

    url: str
    up: bool
    pid: int | None
    version: str | None
    instances: int | None
    storage: str
    detail: str | None = None
    credentials: str | None = None
    dicom_port: int | None = None
    dicom_aet: str | None = None
    modalities: tuple[str, ...] = ()

    def render(self) -> str:
        state = "up" if self.up else "down"
        dicom = "off" if self.dicom_port is None else f"port {self.dicom_port}, AE title {self.dicom_aet}"
        lines = [
            f"Orthanc {state} at {self.url}",
            f"  pid        {self.pid if self.pid is not None else '-'}",
            f"  version    {self.version or '-'}",
            f"  instances  {self.instances if self.instances is not None else '-'}",
            f"  storage    {self.storage}",
            f"  password   {self.credentials or '-'}",
            f"  DICOM      {dicom}",
        ]
        if self.dicom_port is not None:
            lines.append(f"  senders    {', '.join(self.modalities) or 'none'}")
        if self.detail:
            lines.append(f"  note       {self.detail}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "url": self.url,
            "up": self.up,
            "pid": self.pid,
            "version": self.version,
            "instances": self.instances,
            "storage": self.storage,
            "detail": self.detail,
            "credentials": self.credentials,
            "dicom_port": self.dicom_port,
            "dicom_aet": self.dicom_aet,
            "modalities": list(self.modalities),
        }


class OrthancServer:
    """One Orthanc process on 127.0.0.1:``port`` with its data in ``storage``.

    Usable as a context manager (tests, bench, demo): ``with OrthancServer(port, tmp) as s:``
    starts it and always stops it. ``modalities`` are the DICOM senders allowed when
    ``dicom_port`` is set (default: ``MEDLAKE_SCU`` from 127.0.0.1 only).
    """

    def __init__(
        self,
        port: int | None = None,
        storage: Path | None = None,
        *,
        dicom_port: int | None = None,
        aet: str = ORTHANC_AET,
        modalities: tuple[Modality, ...] | list[Modality] = (),
        username: str | None = None,
        password: str | None = None,
        name: str = "medlake",
        binary: str | None = None,
        startup_timeout_s: float = 30.0,
        stable_age_s: int | None = None,
    ) -> None:
        self.port = port or default_port()
        self.storage = Path(storage or orthanc_credentials.default_storage()).resolve()
        self.dicom_port = dicom_port
        self.aet = aet
        self.modalities = tuple(modalities) or allow_list()
        self._given = Credentials(username or "medlake", password, "given explicitly") if password else None
        self.name = name
        self.binary = binary
        self.startup_timeout_s = startup_timeout_s
        # Seconds without a new instance before Orthanc announces StableSeries/StableStudy
        # (`pacs watch` reacts to those); Orthanc's default is 60.
        self.stable_age_s = stable_age_s
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def credentials(self, *, create: bool = True) -> Credentials | None:
        """Given ones, else ORTHANC_USERNAME/PASSWORD, else the storage's file (generated if ``create``).

        Resolved once: the server keeps the password it registered even if the environment changes.
        """
        if self._given is None:
            found = orthanc_credentials.resolve(self.storage, create=create)
            if found is None:
                return None
            self._given = found
        return self._given

    @property
    def username(self) -> str:
        return self.credentials().username

    @property
    def password(self) -> str:
        return self.credentials().password

    @property
    def settings(self) -> OrthancSettings:
        found = self.credentials()
        return OrthancSettings(self.url, found.username, found.password, found.source)

    def client_env(self) -> dict[str, str]:
        """The environment that points medlake's clients (``pacs run``/``watch``) at this server."""
        return {"ORTHANC_URL": self.url, orthanc_credentials.STORAGE_ENV: str(self.storage)}

    @property
    def config_path(self) -> Path:
        return self.storage / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.storage / LOG_FILE

    @property
    def pid_path(self) -> Path:
        return self.storage / PID_FILE

    def client(self, **kwargs) -> OrthancClient:
        return OrthancClient(self.settings, **kwargs)

    def config(self) -> dict:
        db = str(self.storage / "db")
        found = self.credentials()
        return {
            "Name": self.name,
            "StorageDirectory": db,
            "IndexDirectory": db,
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {found.username: found.password},
            **reception_config(self.aet, self.dicom_port, self.modalities),
            "Plugins": [],
            "WebDavEnabled": False,
            "HttpDescribeErrors": True,
            # No gzip of REST answers, whatever a client accepts: instances are large and barely compress
            # (medlake's client asks for identity too; this covers curl, browsers, other tools on loopback).
            "HttpCompressionEnabled": False,
            "OverwriteInstances": False,
            "StorageCompression": False,
            "SaveJobs": False,
            **({"StableAge": self.stable_age_s} if self.stable_age_s is not None else {}),
        }

    def read_pid(self) -> int | None:
        try:
            return int(json.loads(self.pid_path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def running_pid(self) -> int | None:
        """The recorded pid if that process is still an Orthanc."""
        pid = self.read_pid()
        if pid is not None and _pid_alive_as_orthanc(pid):
            return pid
        return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _answers(self) -> dict | None:
        if self.credentials(create=False) is None:
            return None  # never started from this storage (nor told a password): nothing to ask
        try:
            with self.client(timeout_s=2.0, retries=0) as client:
                return client.system()
        except OrthancError:
            return None

    def _write_private(self, path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(path, PRIVATE_FILE_MODE)  # an older, wider file keeps its mode through O_TRUNC

    def _prepare_storage(self) -> None:
        """Storage and index 0700 (also an existing storage's), config 0600, log 0600."""
        make_private_dir(self.storage)
        db = self.storage / "db"
        if db.is_dir():  # an older storage: tighten it; a new one is created by Orthanc under umask 077
            os.chmod(db, 0o700)
        self.credentials()  # generated on the first start of this storage
        self._write_private(self.config_path, json.dumps(self.config(), indent=2))
        if not self.log_path.exists():
            self._write_private(self.log_path, "")
        os.chmod(self.log_path, PRIVATE_FILE_MODE)

    def start(self) -> OrthancServer:
        """Start Orthanc and wait until ``GET /system`` answers; raises :class:`OrthancError` otherwise."""
        binary = self.binary or orthanc_binary()
        if binary is None:
            raise OrthancError(
                "the Orthanc binary is not installed (/usr/sbin/Orthanc): `sudo apt-get install -y orthanc`, "
                "or use docker-compose.yml"
            )
        existing = self.running_pid()
        if existing is not None:
            raise OrthancError(f"an Orthanc (pid {existing}) already runs from {self.storage}; stop it first")
        if port_in_use(self.port):
            raise OrthancError(f"port {self.port} is already in use on 127.0.0.1; pick another with --port")
        if self.dicom_port is not None and port_in_use(self.dicom_port):
            raise OrthancError(f"DICOM port {self.dicom_port} is already in use on 127.0.0.1")
        self._prepare_storage()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [binary, str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.storage,
                umask=ORTHANC_UMASK,
                start_new_session=True,  # outlives `medlake orthanc start`, and Ctrl-C in the shell
            )
        self._write_private(self.pid_path, json.dumps({"pid": self._process.pid, "port": self.port}) + "\n")
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.pid_path.unlink(missing_ok=True)
                raise OrthancError(
                    f"Orthanc exited with code {self._process.returncode} during startup; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self._answers() is not None:
                return self
            time.sleep(0.2)
        self.stop()
        raise OrthancError(
            f"Orthanc did not answer GET /system on {self.url} within {self.startup_timeout_s:.0f} s; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 15.0) -> bool:
        """SIGTERM, wait, SIGKILL if needed. Returns True if a process was stopped."""
        pid = self._process.pid if self._process is not None else self.running_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid_path.unlink(missing_ok=True)
            return False
        if not self._wait_exit(pid, timeout_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 5.0)
        self._process = None
        self.pid_path.unlink(missing_ok=True)
        return True

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == pid:
                if self._process.poll() is not None:
                    return True
            elif not _pid_alive_as_orthanc(pid):
                return True
            time.sleep(0.1)
        return False

    def running_config(self) -> dict:
        """The configuration the storage's Orthanc was last started with ({} if none)."""
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, ValueError):
            return {}

    def status(self) -> ServerStatus:
        pid = self.running_pid()
        found = self.credentials(create=False)
        config = self.running_config()
        dicom_on = bool(config.get("DicomServerEnabled"))
        common = {
            "url": self.url,
            "pid": pid,
            "storage": str(self.storage),
            "credentials": found.source if found else None,
            "dicom_port": config.get("DicomPort") if dicom_on else None,
            "dicom_aet": config.get("DicomAet") if dicom_on else None,
            "modalities": tuple(
                Modality(m["AET"], m["Host"], m["Port"]).spec for m in config.get("DicomModalities", {}).values()
            ),
        }
        if found is None:
            where = orthanc_credentials.credentials_path(self.storage)
            detail = f"no credentials: {where} absent and ORTHANC_PASSWORD unset"
            return ServerStatus(up=False, version=None, instances=None, detail=detail, **common)
        try:
            with self.client(timeout_s=3.0, retries=0) as client:
                system = client.system()
                instances = client.instance_count()
        except OrthancError as exc:
            return ServerStatus(up=False, version=None, instances=None, detail=str(exc), **common)
        detail = None if pid is not None else "answering, but not started from this storage directory"
        return ServerStatus(up=True, version=str(system.get("Version")), instances=instances, detail=detail, **common)

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
