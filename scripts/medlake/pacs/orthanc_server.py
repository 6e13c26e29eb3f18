"""The local Orthanc process: its generated configuration, start, stop and status.

medlake runs the Debian package's ``Orthanc`` binary (1.10.1) itself; no system service
is involved. The generated configuration keeps it local and closed:

* ``RemoteAccessAllowed: false``: Orthanc has no bind-address option, so this is what
  refuses every client that is not on the loopback interface;
* ``AuthenticationEnabled: true`` with one user from ``ORTHANC_USERNAME`` /
  ``ORTHANC_PASSWORD`` (local-only defaults ``medlake`` / ``medlake``);
* the DICOM (C-STORE etc.) server is off unless ``--dicom-port`` is given; no plugins;
  no WebDAV; existing instances are never overwritten (a re-upload is ``AlreadyStored``).

Everything lives in the storage directory: the index and files, ``orthanc.json`` (mode
0600: it holds the password), ``orthanc.log`` and ``orthanc.pid``. ``stop`` sends SIGTERM,
waits, then SIGKILLs, and only ever signals the pid it recorded when that process is still
an Orthanc.
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
from medlake.pacs.orthanc_client import OrthancClient, OrthancSettings

DEFAULT_STORAGE = Path("data/orthanc")
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

    def render(self) -> str:
        state = "up" if self.up else "down"
        lines = [
            f"Orthanc {state} at {self.url}",
            f"  pid        {self.pid if self.pid is not None else '-'}",
            f"  version    {self.version or '-'}",
            f"  instances  {self.instances if self.instances is not None else '-'}",
            f"  storage    {self.storage}",
        ]
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
        }


class OrthancServer:
    """One Orthanc process on 127.0.0.1:``port`` with its data in ``storage``.

    Usable as a context manager (tests, bench, demo): ``with OrthancServer(port, tmp) as s:``
    starts it and always stops it.
    """

    def __init__(
        self,
        port: int | None = None,
        storage: Path | None = None,
        *,
        dicom_port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        name: str = "medlake",
        binary: str | None = None,
        startup_timeout_s: float = 30.0,
        stable_age_s: int | None = None,
    ) -> None:
        settings = OrthancSettings.from_env()
        self.port = port or default_port()
        self.storage = Path(storage or DEFAULT_STORAGE).resolve()
        self.dicom_port = dicom_port
        self.username = username or settings.username
        self.password = password or settings.password
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

    @property
    def settings(self) -> OrthancSettings:
        return OrthancSettings(url=self.url, username=self.username, password=self.password)

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
        return {
            "Name": self.name,
            "StorageDirectory": db,
            "IndexDirectory": db,
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "DicomServerEnabled": self.dicom_port is not None,
            "DicomPort": self.dicom_port or 4242,
            "DicomAet": "MEDLAKE",
            "Plugins": [],
            "WebDavEnabled": False,
            "HttpDescribeErrors": True,
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
        try:
            with self.client(timeout_s=2.0, retries=0) as client:
                return client.system()
        except OrthancError:
            return None

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
        self.storage.mkdir(parents=True, exist_ok=True)
        # The config holds the password: create it private before writing.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.config(), handle, indent=2)
        os.chmod(self.config_path, 0o600)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [binary, str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.storage,
                start_new_session=True,  # outlives `medlake orthanc start`, and Ctrl-C in the shell
            )
        self.pid_path.write_text(json.dumps({"pid": self._process.pid, "port": self.port}) + "\n")
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

    def status(self) -> ServerStatus:
        pid = self.running_pid()
        try:
            with self.client(timeout_s=3.0, retries=0) as client:
                system = client.system()
                instances = client.instance_count()
        except OrthancError as exc:
            return ServerStatus(
                url=self.url,
                up=False,
                pid=pid,
                version=None,
                instances=None,
                storage=str(self.storage),
                detail=str(exc),
            )
        return ServerStatus(
            url=self.url,
            up=True,
            pid=pid,
            version=str(system.get("Version")),
            instances=instances,
            storage=str(self.storage),
            detail=None if pid is not None else "answering, but not started from this storage directory",
        )

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cli_action(action: str, *, port: int | None, storage: Path | None, dicom_port: int | None) -> int:
    """``medlake orthanc start|stop|status``. Exit 0 on success; ``status`` exits 3 when down."""
    server = OrthancServer(port=port, storage=storage, dicom_port=dicom_port)
    if action == "start":
        existing = server.running_pid()
        if existing is not None and server._answers() is not None:
            print(f"Orthanc already running (pid {existing}) at {server.url}, storage {server.storage}")
            return 0
        server.start()
        status = server.status()
        print(f"Orthanc started: {status.url} (pid {server.read_pid()}, version {status.version})")
        print(f"  storage {server.storage}  log {server.log_path}")
        if server.url != OrthancSettings.from_env().url:
            print(f"  export ORTHANC_URL={server.url}   # so `medlake pacs run` finds it")
        return 0
    if action == "stop":
        if server.stop():
            print(f"Orthanc stopped (storage {server.storage})")
        else:
            print(f"no Orthanc running from {server.storage}")
        return 0
    if action == "status":
        status = server.status()
        print(status.render())
        return 0 if status.up else STATUS_DOWN_EXIT
    raise OrthancError(f"unknown action {action!r}: expected start, stop or status")
