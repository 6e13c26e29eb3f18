"""Reading DICOMs the way TorchXRayVision expects, batching them, and running the model.

Pipeline per image (``preprocess_path``): ``xrv.utils.read_xray_dcm`` (MONOCHROME1 is
inverted to MONOCHROME2, pixels scaled to [-1024, 1024]) -> ``XRayCenterCrop`` (a
non-square image loses the edges of its long side) -> ``XRayResizer(224)``. Real files
need three workarounds, each recorded as a warning on the image:

* no File Meta (a bare dataset, e.g. ``CR-MONO1-10-chest``): ``read_xray_dcm`` cannot
  find the transfer syntax, so a File Meta with the transfer syntax pydicom detected
  (Implicit VR Little Endian for such files) is added and the dataset is read from memory;
* pixel values above ``2**BitsStored - 1`` (xrv raises "max image value ... higher than
  expected bound"): the header understates the bit depth, so the image is scaled as data
  of the bit depth its maximum needs (at most BitsAllocated) instead of being rejected;
* non-square images: centre-cropped to a square, as the model was trained.

Decoding runs in a thread pool ahead of the forward pass (a bounded prefetch window), so
one core decodes the next batch while torch runs the current one. An image that cannot be
read fails alone; the rest of the batch continues.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medlake.errors import WeightsNotFoundError
from medlake.pacs.model.weights import UNTRAINED_SEED, WEIGHTS_KEY, ModelIdentity, WeightsChoice

INPUT_SIZE = 224
# The model's outputs are calibrated with op_norm: each pathology's operating point maps to 0.5.
CALIBRATED_THRESHOLD = 0.5
_OUT_OF_RANGE_MESSAGE = "higher than expected bound"


def _xrv():
    # torchxrayvision imports torch (seconds); keep it out of module import time.
    import torchxrayvision

    return torchxrayvision


def pathologies() -> tuple[str, ...]:
    return tuple(_xrv().models.model_urls["all"]["labels"])


def operating_points() -> tuple[float, ...]:
    return tuple(float(v) for v in _xrv().models.model_urls["all"]["op_threshs"])


# --- reading ---------------------------------------------------------------------------


def ensure_file_meta(ds: Dataset) -> bool:
    """Give a dataset read without File Meta one that names its encoding. True if added."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return False
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if little is False:
        raise ValueError("big-endian dataset without File Meta is not supported")
    new_meta = FileMetaDataset() if meta is None else meta
    new_meta.TransferSyntaxUID = ExplicitVRLittleEndian if implicit is False else ImplicitVRLittleEndian
    if "SOPClassUID" in ds:
        new_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        new_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = new_meta
    return True


def read_dataset(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file, with or without preamble/File Meta; raises on non-DICOM input."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except pydicom.errors.InvalidDicomError:
        # A bare dataset (no preamble, no 'DICM') is still DICOM if it parses to an instance.
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
        if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
            raise pydicom.errors.InvalidDicomError(f"{path.name} is not a DICOM file") from None
    ensure_file_meta(ds)
    return ds


def _normalise_out_of_range(source: Path | io.BytesIO) -> tuple[np.ndarray, str]:
    """read_xray_dcm for a file whose pixels exceed its declared BitsStored."""
    xrv = _xrv()
    if isinstance(source, io.BytesIO):
        source.seek(0)
    ds = pydicom.dcmread(source, force=True)
    data = ds.pixel_array
    declared_max = 2 ** int(ds.BitsStored) - 1
    observed_max = int(data.max())
    effective_bits = min(int(ds.BitsAllocated), max(int(ds.BitsStored), observed_max.bit_length()))
    effective_max = 2**effective_bits - 1
    data = np.clip(data, None, effective_max)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        data = effective_max - data
    image = xrv.utils.normalize(data, effective_max)
    warning = (
        f"pixel values up to {observed_max} exceed BitsStored={ds.BitsStored} (max {declared_max}); "
        f"scaled as {effective_bits}-bit data"
    )
    return image, warning


def load_xray(path: Path) -> tuple[np.ndarray, list[str]]:
    """One DICOM as a 2-D float32 array in [-1024, 1024] (xrv's scale), plus warnings."""
    xrv = _xrv()
    warnings: list[str] = []
    header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    source: Path | io.BytesIO = path
    if "TransferSyntaxUID" not in header.file_meta:
        # read_xray_dcm cannot decode a dataset without a transfer syntax: hand it a copy with File Meta.
        full = read_dataset(path)
        buffer = io.BytesIO()
        full.save_as(buffer, enforce_file_format=True)
        buffer.seek(0)
        source = buffer
        warnings.append(f"no File Meta: read as {full.file_meta.TransferSyntaxUID.name}")
    monochrome1 = header.get("PhotometricInterpretation") == "MONOCHROME1"
    try:
        # xrv's own MONOCHROME1 fix is (max - x) before scaling, i.e. exactly the negation after
        # scaling; doing it here avoids its per-file UserWarning and keeps the note in our warnings.
        image = xrv.utils.read_xray_dcm(source, fix_monochrome=False)
        if monochrome1:
            image = -image
    except ValueError as exc:
        if _OUT_OF_RANGE_MESSAGE not in str(exc):
            raise
        image, warning = _normalise_out_of_range(source)
        warnings.append(warning)
    if monochrome1:
        warnings.append("MONOCHROME1: inverted to MONOCHROME2")
    return np.asarray(image, dtype=np.float32), warnings


@dataclass(frozen=True)
class PreprocessedImage:
    """A model-ready (1, 224, 224) array, or the reason there is none."""

    path: Path
    array: np.ndarray | None
    original_shape: tuple[int, int] | None
    warnings: tuple[str, ...]
    error: str | None
    decode_s: float

    @property
    def ok(self) -> bool:
        return self.array is not None


def preprocess_path(path: Path) -> PreprocessedImage:
    """Read, crop and resize one file. Never raises: a failure is returned as ``error``."""
    xrv = _xrv()
    started = time.perf_counter()
    try:
        image, warnings = load_xray(Path(path))
        if image.ndim != 2:
            raise ValueError(f"expected a single-frame grayscale image, got pixel array shape {image.shape}")
        rows, cols = image.shape
        if rows != cols:
            side = min(rows, cols)
            warnings.append(f"non-square {rows}x{cols}: centre-cropped to {side}x{side}")
        array = xrv.datasets.XRayCenterCrop()(image[None, ...])
        array = xrv.datasets.XRayResizer(INPUT_SIZE)(array).astype(np.float32, copy=False)
        return PreprocessedImage(
            path=Path(path),
            array=array,
            original_shape=(int(rows), int(cols)),
            warnings=tuple(warnings),
            error=None,
            decode_s=time.perf_counter() - started,
        )
    except Exception as exc:  # one unreadable image must not stop the run
        return PreprocessedImage(
            path=Path(path),
            array=None,
            original_shape=None,
            warnings=(),
            error=f"{type(exc).__name__}: {exc}",
            decode_s=time.perf_counter() - started,
        )


def default_decode_workers() -> int:
    # One decoder per core: decoding mostly waits for batches to fill while torch idles, and when both
    # run at once the OS shares the cores (measured on 2 cores: 2 decoders beat 1 end to end).
    return max(1, os.cpu_count() or 1)


def iter_preprocessed(
    paths: Iterable[Path], *, workers: int | None = None, window: int = 16
) -> Iterator[PreprocessedImage]:
    """Preprocess in a thread pool, yielding in input order, at most ``window`` images in flight."""
    workers = workers or default_decode_workers()
    source = iter(paths)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xrv-decode") as pool:
        pending: deque[Future[PreprocessedImage]] = deque()
        for path in source:
            pending.append(pool.submit(preprocess_path, path))
            if len(pending) >= window:
                break
        while pending:
            done = pending.popleft().result()
            following = next(source, None)
            if following is not None:
                pending.append(pool.submit(preprocess_path, following))
            yield done


def preprocess_paths(paths: Sequence[Path], *, workers: int | None = None) -> list[PreprocessedImage]:
    """Preprocess many files (for benchmarks: decode cost without the model)."""
    return list(iter_preprocessed(paths, workers=workers, window=max(16, len(paths))))


# --- the model -------------------------------------------------------------------------


def state_dict_sha256(model) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes: the identity of untrained weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(data.dtype).encode())
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def build_model(choice: WeightsChoice):
    """The DenseNet-121 for ``choice``: the official weights, or a seeded random init of the same shape."""
    import torch

    xrv = _xrv()
    if choice.trained:
        if choice.file is None or not choice.file.is_file():
            # xrv would try to download a missing file; medlake never does.
            raise WeightsNotFoundError(f"weights file disappeared before loading: {choice.file}")
        model = xrv.models.DenseNet(weights=WEIGHTS_KEY, cache_dir=str(choice.file.parent))
    else:
        torch.manual_seed(UNTRAINED_SEED)
        model = xrv.models.DenseNet(weights=None, num_classes=len(pathologies()))
        # Same outputs and calibration as the official model, so everything downstream is identical.
        model.targets = list(pathologies())
        model.pathologies = model.targets
        model.op_threshs = torch.tensor(operating_points())
        model.input_resolution = INPUT_SIZE
    model.eval()
    return model


class Classifier:
    """The loaded model, its identity, and a batch ``predict``."""

    def __init__(self, choice: WeightsChoice, *, threads: int | None = None, device: str | None = None) -> None:
        import torch

        xrv = _xrv()
        torch.set_num_threads(threads or os.cpu_count() or 1)
        self.choice = choice
        # MEDLAKE_TORCH_DEVICE overrides; otherwise a GPU when torch sees one. Recorded with every run.
        wanted = device or os.environ.get("MEDLAKE_TORCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(wanted)
        self.model = build_model(choice).to(self.device)
        self.pathologies: tuple[str, ...] = tuple(self.model.pathologies)
        # From xrv's table (exact decimals) rather than the float32 buffer the model holds.
        self.operating_points: tuple[float, ...] = operating_points()
        digest = choice.file_sha256 if choice.trained else state_dict_sha256(self.model)
        self.identity = ModelIdentity(
            weights_key=WEIGHTS_KEY,
            weights_sha256=str(digest),
            weights_trained=choice.trained,
            weights_file=choice.file.name if choice.file else None,
            torchxrayvision_version=xrv.__version__,
            torch_version=torch.__version__,
        )

    def forward(self, images: Sequence[PreprocessedImage], *, batch_size: int = 8) -> np.ndarray:
        """Forward pass only, over already preprocessed images (for measuring the model alone)."""
        arrays = [image.array for image in images if image.array is not None]
        if not arrays:
            return np.zeros((0, len(self.pathologies)), dtype=np.float32)
        chunks = [self.predict(np.stack(arrays[i : i + batch_size])) for i in range(0, len(arrays), batch_size)]
        return np.concatenate(chunks)

    def classify_paths(
        self, paths: Sequence[Path], *, batch_size: int = 8, workers: int | None = None, progress: bool = False
    ) -> list[ImagePrediction]:
        """Decode + preprocess + forward for files (end to end, decoding overlapped with the model)."""
        return classify(paths, self, batch_size=batch_size, workers=workers, progress=progress)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, 224, 224) float32 in [-1024, 1024] -> (N, 18) calibrated scores (0.5 = operating point)."""
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.model(tensor).cpu().numpy()


@dataclass(frozen=True)
class ImagePrediction:
    path: Path
    scores: tuple[float, ...] | None
    original_shape: tuple[int, int] | None
    warnings: tuple[str, ...]
    error: str | None
    decode_s: float
    forward_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.scores is not None


def _predict_batch(classifier: Classifier, batch: list[PreprocessedImage]) -> list[ImagePrediction]:
    started = time.perf_counter()
    try:
        scores = classifier.predict(np.stack([item.array for item in batch]))
        error = None
    except Exception as exc:  # a batch that breaks the model fails its images, not the run
        scores, error = None, f"{type(exc).__name__}: {exc}"
    share = (time.perf_counter() - started) / len(batch)
    return [
        ImagePrediction(
            path=item.path,
            scores=None if scores is None else tuple(float(v) for v in scores[index]),
            original_shape=item.original_shape,
            warnings=item.warnings,
            error=error,
            decode_s=item.decode_s,
            forward_s=share,
        )
        for index, item in enumerate(batch)
    ]


def iter_classify(
    paths: Iterable[Path],
    classifier: Classifier,
    *,
    batch_size: int = 8,
    workers: int | None = None,
) -> Iterator[ImagePrediction]:
    """Classify files in batches, yielding each prediction as soon as its batch has run.

    Decoding overlaps the forward pass; an image that cannot be decoded is yielded at once
    with its error. The consumer sees results in batch order, not strictly input order.
    """
    batch: list[PreprocessedImage] = []
    window = max(2 * batch_size, 4)
    for item in iter_preprocessed(paths, workers=workers, window=window):
        if not item.ok:
            yield ImagePrediction(
                path=item.path,
                scores=None,
                original_shape=None,
                warnings=item.warnings,
                error=item.error,
                decode_s=item.decode_s,
            )
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            yield from _predict_batch(classifier, batch)
            batch = []
    if batch:
        yield from _predict_batch(classifier, batch)


def classify(
    paths: Sequence[Path],
    classifier: Classifier,
    *,
    batch_size: int = 8,
    workers: int | None = None,
    progress: bool = False,
) -> list[ImagePrediction]:
    """Classify files in batches; decoding overlaps the forward pass. Results in input order."""
    from tqdm import tqdm

    results: dict[Path, ImagePrediction] = {}
    with tqdm(total=len(paths), desc="classify", unit="img", disable=not progress) as bar:
        for prediction in iter_classify(paths, classifier, batch_size=batch_size, workers=workers):
            results[prediction.path] = prediction
            bar.update(1)
    return [results[Path(path)] for path in paths]
