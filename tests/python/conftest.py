"""Shared pytest fixtures.

Shared test data lives in ``../shared`` beside the repo (or ``$MEDLAKE_SHARED_DIR``) and is
never copied into the repo. In a user's clone without it, tests that need it skip with the
reason; under ``CI=true`` its absence is an error, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("MEDLAKE_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_path(*parts: str) -> Path:
    """Return a path under the shared data dir, skipping (or failing under CI) if it is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        message = f"shared test data not found: {path} (set MEDLAKE_SHARED_DIR or clone beside ../shared)"
        if IN_CI:
            pytest.fail(message + " -- required under CI=true")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def neuralmed_dir() -> Path:
    """The real public sample: exam/ (100 files, 122 exams) and medical_report/ (101 files)."""
    return shared_path("data", "neuralmed")


@pytest.fixture(scope="session")
def shared_dicom_dir() -> Path:
    """7 real DICOMs: chest/ (4) and edge_cases/ (3)."""
    return shared_path("data", "dicom")


@pytest.fixture(scope="session")
def reference_sr_dir() -> Path:
    return shared_path("data", "reference_sr")


# --- Orthanc (PACS tests) ------------------------------------------------------------------


def _orthanc_binary_or_skip() -> str:
    from medlake.pacs.orthanc.server import orthanc_binary

    binary = orthanc_binary()
    if binary is None:
        message = "Orthanc binary not installed (/usr/sbin/Orthanc; `make setup` installs the Debian package)"
        if IN_CI:
            pytest.fail(message + " -- required under CI=true")
        pytest.skip(message)
    return binary


@pytest.fixture(scope="session")
def orthanc_binary() -> str:
    """The Orthanc executable; skips (fails under CI=true) when it is not installed."""
    return _orthanc_binary_or_skip()


@pytest.fixture
def orthanc_factory(tmp_path_factory):
    """Start fresh Orthanc servers (free port, tmp storage); every one is stopped at teardown."""
    from medlake.pacs.orthanc.server import OrthancServer, find_free_port

    binary = _orthanc_binary_or_skip()
    started = []

    def start(name: str = "orthanc") -> OrthancServer:
        server = OrthancServer(port=find_free_port(), storage=tmp_path_factory.mktemp(name), binary=binary)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory):
    """One real Orthanc for the session, on a free port with a tmp storage dir."""
    from medlake.pacs.orthanc.server import OrthancServer, find_free_port

    binary = _orthanc_binary_or_skip()
    server = OrthancServer(port=find_free_port(), storage=tmp_path_factory.mktemp("orthanc_session"), binary=binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def orthanc_env(monkeypatch):
    """Point ORTHANC_URL/USERNAME/PASSWORD at a server: ``orthanc_env(server)``."""

    def point_at(server) -> None:
        monkeypatch.setenv("ORTHANC_URL", server.url)
        monkeypatch.setenv("ORTHANC_USERNAME", server.username)
        monkeypatch.setenv("ORTHANC_PASSWORD", server.password)

    return point_at


@pytest.fixture(scope="session")
def dicom_push():
    """Send files to a server's DICOM port as a modality would (pynetdicom C-STORE, one association).

    ``dicom_push(server, paths, calling="MEDLAKE_SCU", host="127.0.0.1", called="MEDLAKE")`` returns
    one C-STORE status per file (0 = stored), or None for each file when the association was refused.
    The server must be started with ``dicom_port`` (by default it accepts ``MEDLAKE_SCU`` on loopback).
    """
    pynetdicom = pytest.importorskip("pynetdicom", reason="pynetdicom (dev extra) is the DICOM client in tests")
    from pydicom import dcmread
    from pydicom.uid import ImplicitVRLittleEndian

    from medlake.pacs.orthanc.reception import LOCAL_SENDER_AET, ORTHANC_AET

    def push(server, paths, *, calling=LOCAL_SENDER_AET, host="127.0.0.1", called=ORTHANC_AET):
        datasets = []
        for path in paths:
            dataset = dcmread(path, force=True)
            if "TransferSyntaxUID" not in dataset.file_meta:  # a bare dataset: implicit VR little endian
                dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
            datasets.append(dataset)
        sender = pynetdicom.AE(ae_title=calling)
        for context in {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}:
            sender.add_requested_context(*context)
        association = sender.associate(host, server.dicom_port, ae_title=called)
        if not association.is_established:
            # Orthanc answers A-ASSOCIATE-RJ and closes the socket at once: pynetdicom may see an abort.
            assert association.is_rejected or association.is_aborted
            return [None] * len(datasets)
        try:
            return [int(association.send_c_store(dataset).Status) for dataset in datasets]
        finally:
            association.release()

    return push


# --- the dbt lake (dbt + query tests) --------------------------------------------------------


@pytest.fixture(scope="session")
def built_sample_lake(neuralmed_dir, tmp_path_factory):
    """The real sample landed and built by dbt once per session (marts in LAKE/medlake.duckdb).

    Tests must not change it; copy it (``shutil.copytree``) to build variations.
    """
    import shutil

    from medlake.lake import landing
    from medlake.warehouse import dbt_runner

    lake = tmp_path_factory.mktemp("built_sample") / "lake"
    landing.land(neuralmed_dir, lake, delivery_date=None, workers=None, progress=False)
    dbt_runner.build(lake, full_refresh=False, select=None, docs=False, quiet=True)
    yield lake
    # each lake gets its own dbt target dir under the repo's target/: drop this tmp lake's
    shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)
