"""``medlake orthanc start|stop|status``: the command around :class:`OrthancServer`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from medlake.errors import OrthancError
from medlake.pacs.orthanc import credentials as orthanc_credentials
from medlake.pacs.orthanc.client import OrthancSettings
from medlake.pacs.orthanc.reception import ORTHANC_AET, allow_list
from medlake.pacs.orthanc.server import PID_FILE, STATUS_DOWN_EXIT, OrthancServer


def recorded_port(storage: Path | None) -> int | None:
    """The HTTP port the storage's Orthanc was started on (from its pid file), if any."""
    pid_path = Path(storage or orthanc_credentials.default_storage()) / PID_FILE
    try:
        return int(json.loads(pid_path.read_text())["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cli_action(
    action: str,
    *,
    port: int | None,
    storage: Path | None,
    dicom_port: int | None,
    aet: str = ORTHANC_AET,
    modalities: Sequence[str] = (),
    modalities_files: Sequence[Path] = (),
    stable_age_s: int | None = None,
    fmt: str = "table",
) -> int:
    """``medlake orthanc start|stop|status``. Exit 0 on success; ``status`` exits 3 when down."""
    if action not in ("start", "stop", "status"):
        raise OrthancError(f"unknown action {action!r}: expected start, stop or status")
    server = OrthancServer(
        port=port or (recorded_port(storage) if action != "start" else None),
        storage=storage,
        dicom_port=dicom_port,
        aet=aet,
        modalities=allow_list(modalities, modalities_files) if action == "start" else (),
        stable_age_s=stable_age_s,
    )
    payload: dict = {"action": action, "storage": str(server.storage)}
    lines: list[str] = []
    code = 0
    if action == "start":
        existing = server.running_pid()
        if existing is not None and server._answers() is not None:
            lines.append(f"Orthanc already running (pid {existing}) at {server.url}, storage {server.storage}")
            payload["already_running"] = True
        else:
            server.start()
            payload["already_running"] = False
            lines.extend(_started_lines(server))
        status = server.status()
    elif action == "stop":
        payload["stopped"] = server.stop()
        stopped = payload["stopped"]
        lines.append(
            f"Orthanc stopped (storage {server.storage})" if stopped else f"no Orthanc running from {server.storage}"
        )
        status = None
    else:
        status = server.status()
        lines.append(status.render())
        code = 0 if status.up else STATUS_DOWN_EXIT
    if status is not None:
        payload["status"] = status.to_dict()
        payload["client_env"] = server.client_env()
    print(json.dumps(payload, indent=2) if fmt == "json" else "\n".join(lines))
    return code


def _started_lines(server: OrthancServer) -> list[str]:
    status = server.status()
    lines = [
        f"Orthanc started: {status.url} (pid {server.read_pid()}, version {status.version})",
        f"  storage {server.storage}  log {server.log_path}",
        f"  password in {status.credentials} (user {server.username})",
    ]
    if server.dicom_port is not None:
        lines.append(
            f"  DICOM port {server.dicom_port} (all interfaces), AE title {server.aet}; "
            f"C-STORE accepted only from: {', '.join(m.spec for m in server.modalities)}"
        )
    env = server.client_env()
    defaults = {"ORTHANC_URL": OrthancSettings.from_env().url, orthanc_credentials.STORAGE_ENV: None}
    if server.url != defaults["ORTHANC_URL"] or server.storage != orthanc_credentials.default_storage().resolve():
        exports = " ".join(f"{key}={value}" for key, value in env.items())
        lines.append(f"  export {exports}   # so `medlake pacs run` finds it")
    return lines
