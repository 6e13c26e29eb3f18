"""DICOM reception: only listed modalities (AE title + IP) may C-STORE, pushed with a real client (pynetdicom).

One real Orthanc with its DICOM port on, allowing the default local sender only. Also: a file
Orthanc received over DICOM carries Orthanc's own File Meta, and `pacs run` must still see it as
the instance Orthanc holds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medlake.pacs.orthanc.identity import same_instance
from medlake.pacs.orthanc.reception import (
    LOCAL_SENDER_AET,
    ORTHANC_AET,
    Modality,
    ModalityConfigError,
    allow_list,
    parse_modality,
    read_modalities_file,
    reception_config,
)
from medlake.pacs.orthanc.server import OrthancServer, find_free_port

pynetdicom = pytest.importorskip("pynetdicom", reason="pynetdicom (dev extra) pushes DICOMs in these tests")

SIIM = "chest/torchxrayvision__1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
NCCID = "chest/nccid__1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm"
RG1_UNCR = "chest/pydicom-data__RG1_UNCR.dcm"
NO_META = "edge_cases/fo-dicom__CR-MONO1-10-chest.dcm"
SUCCESS_STATUS = 0x0000


# --- the allow-list, parsed and written (no Orthanc) -------------------------------------------


def test_modality_specs_parse_with_loopback_and_port_104_defaults(tmp_path):
    assert parse_modality("CR_ROOM1@10.1.2.3:11112") == Modality("CR_ROOM1", "10.1.2.3", 11112)
    assert parse_modality("DX2") == Modality("DX2", "127.0.0.1", 104)
    assert parse_modality("DX2@localhost") == Modality("DX2", "127.0.0.1", 104)
    assert parse_modality("US 1@[::1]:4242") == Modality("US 1", "::1", 4242)
    for bad, reason in (
        ("A_TITLE_LONGER_THAN_16@10.0.0.1", "longer than 16"),
        ("CR@ct-room.hospital.org", "not an IP address"),
        ("CR@10.0.0.1:70000", "out of range"),
        ("CR\\X@10.0.0.1", "backslash"),
        ("@10.0.0.1", "expected AET@HOST:PORT"),
    ):
        with pytest.raises(ModalityConfigError, match=reason):
            parse_modality(bad)
    listed = tmp_path / "modalities.txt"
    listed.write_text("# radiology floor 2\nCR_ROOM1@10.1.2.3:104   # Fuji CR\n\nDX_ROOM2@10.1.2.4\n")
    assert read_modalities_file(listed) == [Modality("CR_ROOM1", "10.1.2.3"), Modality("DX_ROOM2", "10.1.2.4")]
    listed.write_text("CR_ROOM1@10.1.2.3\nnot a host@x.y\n")
    with pytest.raises(ModalityConfigError, match=r"modalities.txt:2"):
        read_modalities_file(listed)
    # Nothing listed: only the local sender on loopback; flags and files combine, de-duplicated.
    assert allow_list() == (Modality(LOCAL_SENDER_AET, "127.0.0.1", 104),)
    listed.write_text("CR_ROOM1@10.1.2.3\n")
    assert allow_list(["CR_ROOM1@10.1.2.3", "DX9@10.0.0.9"], [listed]) == (
        Modality("CR_ROOM1", "10.1.2.3"),
        Modality("DX9", "10.0.0.9"),
    )


def test_reception_config_refuses_unknown_senders_and_queries():
    config = reception_config("MEDLAKE", 11112, [Modality("CR_ROOM1", "10.1.2.3")])
    assert config["DicomServerEnabled"] is True and config["DicomPort"] == 11112
    for key in ("DicomCheckCalledAet", "DicomCheckModalityHost", "StrictAetComparison"):
        assert config[key] is True, key
    for kind in ("Echo", "Store", "Find", "FindWorklist", "Get", "Move"):
        assert config[f"DicomAlwaysAllow{kind}"] is False, kind
    (entry,) = config["DicomModalities"].values()
    assert (entry["AET"], entry["Host"], entry["AllowStore"], entry["AllowEcho"]) == (
        "CR_ROOM1",
        "10.1.2.3",
        True,
        True,
    )
    assert not any(entry[f"Allow{kind}"] for kind in ("Find", "FindWorklist", "Get", "Move", "StorageCommitment"))
    assert reception_config("MEDLAKE", None, [Modality("CR_ROOM1")])["DicomModalities"] == {}


# --- same instance, file meta aside (no Orthanc) -------------------------------------------------


def _encode(dataset: Dataset, transfer_syntax: str, *, implementation: str = "1.2.3.4") -> bytes:
    copy = Dataset(dataset)
    copy.file_meta = FileMetaDataset(dataset.file_meta)
    copy.file_meta.TransferSyntaxUID = transfer_syntax
    copy.file_meta.ImplementationClassUID = implementation
    buffer = BytesIO()
    copy.save_as(buffer, implicit_vr=transfer_syntax == ImplicitVRLittleEndian, enforce_file_format=True)
    return buffer.getvalue()


def test_same_instance_ignores_file_meta_but_not_the_dataset(shared_dicom_dir):
    original = (shared_dicom_dir / RG1_UNCR).read_bytes()  # explicit VR little endian
    dataset = dcmread(BytesIO(original))
    other_meta = _encode(dataset, ExplicitVRLittleEndian, implementation="1.2.826.0.1.3680043.99")
    assert other_meta != original and same_instance(other_meta, original)
    implicit = _encode(dataset, ImplicitVRLittleEndian)  # as an SCU may send it
    assert dcmread(BytesIO(implicit)).original_encoding == (True, True)  # (implicit VR, little endian)
    assert same_instance(implicit, original)
    changed = dcmread(BytesIO(original))
    changed.PatientID = "someone else"
    assert not same_instance(_encode(changed, ExplicitVRLittleEndian), original)
    pixels = bytearray(dataset.PixelData)
    pixels[-1] ^= 0xFF
    changed = dcmread(BytesIO(original))
    changed.PixelData = bytes(pixels)
    assert not same_instance(_encode(changed, ExplicitVRLittleEndian), original)
    assert not same_instance(b"not DICOM at all", original)


# --- a real Orthanc, a real DICOM client ----------------------------------------------------------


@pytest.fixture(scope="module")
def receiving_orthanc(orthanc_binary, tmp_path_factory):
    server = OrthancServer(
        port=find_free_port(),
        storage=tmp_path_factory.mktemp("dicom_reception"),
        dicom_port=find_free_port(),
        binary=orthanc_binary,
    )
    server.start()
    yield server
    server.stop()


def _dataset(path: Path) -> Dataset:
    return dcmread(path, force=True, stop_before_pixels=True)


@pytest.fixture
def c_store(dicom_push):
    """One file: its C-STORE status, or None when the association was refused."""

    def push_one(server: OrthancServer, path: Path, **kwargs) -> int | None:
        (status,) = dicom_push(server, [path], **kwargs)
        return status

    return push_one


def _stored(server: OrthancServer, path: Path) -> list[str]:
    with server.client() as client:
        return client.find_instances(str(_dataset(path).SOPInstanceUID))


def _non_loopback_ipv4() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.255", 9))  # UDP connect sends nothing: it only picks the outgoing address
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def _echo(server: OrthancServer, calling: str) -> int | None:
    from pynetdicom.sop_class import Verification

    sender = pynetdicom.AE(ae_title=calling)
    sender.add_requested_context(Verification)
    association = sender.associate("127.0.0.1", server.dicom_port, ae_title=ORTHANC_AET)
    if not association.is_established:
        return None
    try:
        return int(association.send_c_echo().Status)
    finally:
        association.release()


@pytest.mark.orthanc
@pytest.mark.shared
def test_listed_sender_on_loopback_stores_and_echoes_but_cannot_query(receiving_orthanc, shared_dicom_dir, c_store):
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

    assert c_store(receiving_orthanc, shared_dicom_dir / RG1_UNCR, calling=LOCAL_SENDER_AET) == SUCCESS_STATUS
    assert len(_stored(receiving_orthanc, shared_dicom_dir / RG1_UNCR)) == 1
    sender = pynetdicom.AE(ae_title=LOCAL_SENDER_AET)
    sender.add_requested_context(Verification)
    sender.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    association = sender.associate("127.0.0.1", receiving_orthanc.dicom_port, ae_title=ORTHANC_AET)
    assert association.is_established
    assert association.send_c_echo().Status == SUCCESS_STATUS
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    answers = list(association.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    # Orthanc aborts the association instead of answering: no identifier, no success or pending status.
    assert all(identifier is None for _, identifier in answers)
    assert not any(status and status.Status in (0x0000, 0xFF00, 0xFF01) for status, _ in answers)
    if association.is_established:
        association.release()


@pytest.mark.orthanc
@pytest.mark.shared
def test_unlisted_ae_title_wrong_called_aet_or_foreign_address_is_refused(receiving_orthanc, shared_dicom_dir, c_store):
    nccid = shared_dicom_dir / NCCID
    with receiving_orthanc.client() as client:
        before = client.instance_count()
    assert _echo(receiving_orthanc, LOCAL_SENDER_AET) == SUCCESS_STATUS  # the port answers: refusals below are real
    assert c_store(receiving_orthanc, nccid, calling="UNLISTED_CR") is None
    assert c_store(receiving_orthanc, nccid, calling=LOCAL_SENDER_AET.lower()) is None  # AE titles are case-sensitive
    assert c_store(receiving_orthanc, nccid, calling=LOCAL_SENDER_AET, called="ANY_SCP") is None
    address = _non_loopback_ipv4()
    if address is not None:  # the listed AE title, but from this machine's network address, not loopback
        assert c_store(receiving_orthanc, nccid, calling=LOCAL_SENDER_AET, host=address) is None
    assert _stored(receiving_orthanc, nccid) == []
    with receiving_orthanc.client() as client:
        assert client.instance_count() == before


@pytest.mark.orthanc
@pytest.mark.shared
def test_pacs_run_recognises_an_instance_orthanc_received_over_dicom(
    receiving_orthanc, orthanc_env, shared_dicom_dir, tmp_path, c_store
):
    from medlake.pacs.loop import run as pacs
    from medlake.pacs.orthanc.client import ALREADY_STORED, SUCCESS

    source = shared_dicom_dir / SIIM
    assert c_store(receiving_orthanc, source, calling=LOCAL_SENDER_AET) == SUCCESS_STATUS
    (instance_id,) = _stored(receiving_orthanc, source)
    with receiving_orthanc.client() as client:
        # Orthanc wrote its own File Meta: the bytes differ from the file, the instance does not.
        assert client.stored_md5(instance_id) != hashlib.md5(source.read_bytes()).hexdigest()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / source.name).write_bytes(source.read_bytes())
    orthanc_env(receiving_orthanc)
    days = {dt.datetime.now(dt.UTC).strftime("%Y%m%d")}
    summary = pacs.run(
        inbox,
        tmp_path / "lake",
        weights_dir=tmp_path / "no-weights",
        allow_untrained=True,
        workers=1,
        batch_size=1,
        results_dir=tmp_path / "results",
        progress=False,
    )
    (row,) = summary.files
    assert row.upload_status == ALREADY_STORED and row.orthanc_id == instance_id
    assert row.note is None or "different file" not in row.note
    assert row.model_status == pacs.CLASSIFIED
    assert row.sr_status == SUCCESS and row.placement_verified is True
    assert summary.ok, summary.render()
    # The SR the loop stored: numbered within its series, dated when the model ran (UTC, today).
    with receiving_orthanc.client() as client:
        (sr_id,) = client.find_instances(row.sr_sop_instance_uid)
        sr = dcmread(BytesIO(client.download(sr_id)))
    assert sr.InstanceNumber == 1
    days.add(dt.datetime.now(dt.UTC).strftime("%Y%m%d"))  # the run may cross midnight
    assert sr.ContentDate == sr.SeriesDate == sr.InstanceCreationDate != sr.StudyDate
    assert sr.ContentDate in days
    assert sr.TimezoneOffsetFromUTC == "+0000"
