"""Test helpers: a mixed study built with pydicom from the real shared chest DICOMs.

Every instance starts from the NCCID chest DX (a real NIH chest radiograph, 1024x1024
uncompressed), shrunk to 256x256 so the study stays small, then given the attributes of what a
hospital study really holds beside a PA chest: a lateral, CT slices, a hand, a For Processing
DX, an RGB secondary capture, a multi-frame object and an SR someone else wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

NCCID = "chest/nccid__1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm"
REFERENCE_SR = "leticialopesms__image-09599604_SR.dcm"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SIDE = 256


@dataclass(frozen=True)
class StudyInstance:
    name: str
    path: Path
    sop_instance_uid: str
    expected_reason: str | None  # None: the one the model must classify


def _base(shared_dicom_dir: Path) -> tuple[Dataset, np.ndarray]:
    source = pydicom.dcmread(shared_dicom_dir / NCCID)
    pixels = source.pixel_array
    step = pixels.shape[0] // SIDE
    return source, np.ascontiguousarray(pixels[::step, ::step][:SIDE, :SIDE]).astype(np.uint8)


def _instance(
    template: Dataset,
    pixels: np.ndarray,
    *,
    study_uid: str,
    series_uid: str,
    patient_id: str,
    sop_class: str,
    modality: str,
    number: int,
    change: Callable[[Dataset], None] | None = None,
) -> Dataset:
    ds = Dataset()
    for keyword in ("PatientName", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber", "StudyID"):
        setattr(ds, keyword, template.get(keyword, ""))
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.SeriesNumber = number
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    if modality in ("DX", "CR"):
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
    if change is not None:
        change(ds)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _rgb(ds: Dataset) -> None:
    gray = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(ds.Rows, ds.Columns)
    ds.PixelData = np.stack([gray, gray, gray], axis=-1).tobytes()
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    del ds.PresentationIntentType


def _multi_frame(ds: Dataset) -> None:
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2


def _for_processing(ds: Dataset) -> None:
    ds.PresentationIntentType = "FOR PROCESSING"


def _lateral(ds: Dataset) -> None:
    ds.ViewPosition = "LL"


def _hand(ds: Dataset) -> None:
    ds.BodyPartExamined = "HAND"


def mixed_study(
    shared_dicom_dir: Path, reference_sr_dir: Path, out: Path, *, patient_id: str = "MIXED-1"
) -> list[StudyInstance]:
    """Write the mixed study under ``out``; one PA chest to classify, every other instance to skip."""
    template, pixels = _base(shared_dicom_dir)
    study_uid = generate_uid()
    out.mkdir(parents=True, exist_ok=True)
    plans = [
        ("pa", DX_PRESENTATION, "DX", None, None),
        ("lateral", DX_PRESENTATION, "DX", _lateral, "view"),
        ("hand", CR_STORAGE, "CR", _hand, "body_part"),
        ("for_processing", DX_PROCESSING, "DX", _for_processing, "for_processing"),
        ("rgb_secondary_capture", SECONDARY_CAPTURE, "CR", _rgb, "not_grayscale"),
        ("multi_frame", DX_PRESENTATION, "DX", _multi_frame, "multi_frame"),
    ]
    instances = []
    for number, (name, sop_class, modality, change, reason) in enumerate(plans, start=1):
        ds = _instance(
            template,
            pixels,
            study_uid=study_uid,
            series_uid=generate_uid(),
            patient_id=patient_id,
            sop_class=sop_class,
            modality=modality,
            number=number,
            change=change,
        )
        path = out / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        instances.append(StudyInstance(name, path, str(ds.SOPInstanceUID), reason))
    ct_series = generate_uid()
    for slice_number in range(3):
        ds = _instance(
            template,
            pixels,
            study_uid=study_uid,
            series_uid=ct_series,
            patient_id=patient_id,
            sop_class=CT_STORAGE,
            modality="CT",
            number=10,
        )
        ds.InstanceNumber = slice_number + 1
        del ds.ViewPosition
        path = out / f"ct_{slice_number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        instances.append(StudyInstance(f"ct_{slice_number}", path, str(ds.SOPInstanceUID), "modality"))
    sr = pydicom.dcmread(reference_sr_dir / REFERENCE_SR)
    sr.PatientID, sr.StudyInstanceUID = patient_id, study_uid
    sr.SeriesInstanceUID, sr.SOPInstanceUID = generate_uid(), generate_uid()
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    path = out / "existing_sr.dcm"
    sr.save_as(path)
    instances.append(StudyInstance("existing_sr", path, str(sr.SOPInstanceUID), "non_image"))
    return instances


def series_count(instances: list[StudyInstance]) -> int:
    return len({pydicom.dcmread(i.path, stop_before_pixels=True).SeriesInstanceUID for i in instances})


def wait_until_stable(client, series: int, *, since: int = 0, timeout_s: float = 60.0) -> None:
    """Wait until Orthanc has announced ``series`` StableSeries changes after ``since``."""
    deadline = time.monotonic() + timeout_s
    while True:
        changes = client.changes(since, limit=10_000)["Changes"]
        stable = {c["ID"] for c in changes if c["ChangeType"] == "StableSeries"}
        if len(stable) >= series:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(stable)} of {series} series became stable in {timeout_s}s")
        time.sleep(0.3)


def upload(client, paths: list[Path]) -> None:
    outcomes = client.upload_files(paths, workers=4)
    failed = [o for o in outcomes if not o.stored]
    assert not failed, failed


def push_over_dicom(server, paths: list[Path]) -> None:
    """C-STORE every file to the server's DICOM port as the default local sender (pynetdicom)."""
    import pynetdicom

    from medlake.pacs.orthanc.reception import LOCAL_SENDER_AET, ORTHANC_AET

    datasets = [pydicom.dcmread(path) for path in paths]
    sender = pynetdicom.AE(ae_title=LOCAL_SENDER_AET)
    for context in {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}:
        sender.add_requested_context(*context)
    association = sender.associate("127.0.0.1", server.dicom_port, ae_title=ORTHANC_AET)
    assert association.is_established, "Orthanc refused the association"
    try:
        statuses = [int(association.send_c_store(ds).Status) for ds in datasets]
    finally:
        association.release()
    assert statuses == [0] * len(datasets), statuses
