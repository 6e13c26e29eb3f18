"""A synthetic chest CR as a valid DICOM Part 10 file (pydicom + numpy; no pixel codecs needed)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from medlake.devtools.synth_tables import (
    CR_IMAGE_STORAGE,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID,
    uid_for,
)

# A fixed publication time (2021-12-01 UTC): synthetic series are the same bytes on every run.
SERIES_PUBLISHED = 1_638_316_800.0


def write_chest_cr_series(
    directory: Path,
    count: int,
    *,
    seed: int,
    name: str,
    images_per_study: int = 1,
    rows: int = 320,
    columns: int = 256,
) -> list[Path]:
    """``count`` synthetic chest CRs as ``directory/<name>-NNNN.dcm``, ``images_per_study`` to a study.

    UIDs come from ``uid_for(seed, "<name>:<index>:sop")`` (studies and series from the study's
    index), so callers can name the instances they expect without reading the files back.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        study = index // images_per_study
        path = directory / f"{name}-{index:04d}.dcm"
        write_chest_cr(
            path,
            seed=seed,
            exam_id=index + 1,
            sop_instance_uid=uid_for(seed, f"{name}:{index}:sop"),
            study_instance_uid=uid_for(seed, f"{name}:{study}:study"),
            series_instance_uid=uid_for(seed, f"{name}:{study}:series"),
            published=SERIES_PUBLISHED,
            rows=rows,
            columns=columns,
        )
        paths.append(path)
    return paths


def write_chest_cr(
    path: Path,
    *,
    seed: int,
    exam_id: int,
    sop_instance_uid: str,
    study_instance_uid: str,
    series_instance_uid: str,
    published: float,
    rows: int = 320,
    columns: int = 256,
) -> None:
    """Write a synthetic chest CR (PA) as a valid DICOM Part 10 file, explicit VR little endian.

    Small by default (320x256, so deliveries stay light); benchmarks ask for detector-sized ones.

    Every fourth exam is MONOCHROME1 (inverted), like many real CRs. Longer than 60 lines on
    purpose: one line per DICOM attribute, read top to bottom like the header it writes.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset

    monochrome1 = exam_id % 4 == 0
    pixels = _chest_pixels(seed, exam_id, rows, columns, inverted=monochrome1)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = "MEDLAKE_SYNTH_1"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    when = dt.datetime.fromtimestamp(published, dt.UTC)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.AccessionNumber = f"SYN{exam_id:010d}"
    ds.Modality = "CR"
    ds.Manufacturer = "medlake synth"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Synthetic chest PA"
    ds.PatientName = f"Synthetic^Exam{exam_id}"
    ds.PatientID = f"SYNPAT{exam_id:010d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "F" if exam_id % 2 else "M"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyID = str(exam_id)[-16:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _chest_pixels(seed: int, exam_id: int, rows: int, columns: int, *, inverted: bool):  # -> np.ndarray
    """A bright body ellipse with two darker "lungs" and a spine, plus seeded noise.

    12 bits stored in 16 (values <= 4095, as TorchXRayVision's normaliser requires).
    """
    import numpy as np  # only when images are asked for

    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}:{exam_id}:pixels".encode()).digest()[:8]))
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    cy, cx = rows / 2, columns / 2

    def ellipse(center_y: float, center_x: float, radius_y: float, radius_x: float) -> np.ndarray:
        return (((y - center_y) / radius_y) ** 2 + ((x - center_x) / radius_x) ** 2) <= 1.0

    image = np.full((rows, columns), 300.0, dtype=np.float32)
    image[ellipse(cy, cx, rows * 0.46, columns * 0.45)] = 2600.0
    lung_shift = float(rng.uniform(-6, 6))
    image[ellipse(cy - 10 + lung_shift, cx - columns * 0.2, rows * 0.3, columns * 0.14)] = 900.0
    image[ellipse(cy - 10 - lung_shift, cx + columns * 0.2, rows * 0.3, columns * 0.14)] = 900.0
    image[:, int(cx - 8) : int(cx + 8)] += 700.0 * (np.abs(y[:, int(cx - 8) : int(cx + 8)] - cy) < rows * 0.42)
    image += 600.0 * (1.0 - y / rows)  # soft vertical gradient
    image += rng.normal(0.0, 60.0, size=image.shape).astype(np.float32)
    pixels = np.clip(image, 0, 4095).astype(np.uint16)
    return (4095 - pixels).astype(np.uint16) if inverted else pixels
