"""``LakeDataset``: an export read the way TorchXRayVision reads its own datasets.

Like ``xrv.datasets.NIH_Dataset`` and its siblings it has ``pathologies`` (the label columns),
a float32 ``labels`` matrix (1, 0 or NaN per pathology), a ``csv`` DataFrame aligned with it
(``patientid`` is the pseudonymous patient key), and items ``{"img", "lab", "idx"}`` where
``img`` is a (1, H, W) float32 array scaled to [-1024, 1024] (``xrv.utils.read_xray_dcm``, or
``xrv.utils.normalize`` for PNG/JPEG), then ``transform`` (by default xrv's
``XRayCenterCrop()`` + ``XRayResizer(224)``), then ``data_aug``. As in xrv, uncertain labels
(-1) become NaN unless ``uncertain`` says otherwise.

This module imports torch and torchxrayvision; ``medlake.dataset`` loads it only on first use
of ``LakeDataset`` so that exporting needs neither.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torchvision
import torchxrayvision as xrv

from medlake.dataset.card import DATASET_JSON, MANIFEST
from medlake.dataset.splits import Split
from medlake.errors import DatasetError

XRV_DEFAULT = "xrv"
_UNCERTAIN_AS = {"nan": np.nan, "positive": 1.0, "negative": 0.0, "keep": -1.0}


def xrv_transform(size: int = 224) -> torchvision.transforms.Compose:
    """TorchXRayVision's standard preprocessing: centre crop to a square, resize to ``size``."""
    return torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(size)])


class LakeDataset(xrv.datasets.Dataset, torch.utils.data.Dataset):
    """The rows of one split of a ``medlake dataset export`` that have an exported image."""

    def __init__(
        self,
        export_dir: Path | str,
        split: str | Split | None = Split.TRAIN,
        transform: Any = XRV_DEFAULT,
        data_aug: Any = None,
        *,
        pathology_names: Literal["lake", "xrv"] = "lake",
        uncertain: Literal["nan", "positive", "negative", "keep"] = "nan",
    ) -> None:
        super().__init__()
        self.export_dir = Path(export_dir)
        card_path = self.export_dir / DATASET_JSON
        if not card_path.is_file():
            raise DatasetError(f"{self.export_dir} has no {DATASET_JSON}: not a medlake dataset export")
        self.card = json.loads(card_path.read_text(encoding="utf-8"))
        if uncertain not in _UNCERTAIN_AS:
            raise DatasetError(f"uncertain must be one of {', '.join(_UNCERTAIN_AS)}, got {uncertain!r}")
        import pandas as pd

        frame = pd.read_parquet(self.export_dir / MANIFEST)
        frame = frame[frame["image_path"].notna()]
        if split is not None:
            if str(split) not in {s.value for s in Split}:
                raise DatasetError(f"split must be one of train, val, test (or None for all), got {split!r}")
            frame = frame[frame["split"] == str(split)]
        self.csv = frame.reset_index(drop=True)
        self.csv["patientid"] = self.csv["patient_key"].fillna("exam:" + self.csv["exam_key"])
        labels = list(self.card["labels"])
        if pathology_names == "xrv":
            names = self.card.get("label_xrv_pathologies", {})
            self.pathologies = [names.get(label) or label for label in labels]
        else:
            self.pathologies = labels
        matrix = self.csv[labels].to_numpy(dtype=np.float32, na_value=np.nan, copy=True)
        matrix[matrix == -1] = _UNCERTAIN_AS[uncertain]
        self.labels = matrix.reshape(len(self.csv), len(labels))
        self.split = split
        self.transform = xrv_transform() if transform == XRV_DEFAULT else transform
        self.data_aug = data_aug

    def string(self) -> str:
        return f"{self.__class__.__name__} num_samples={len(self)} split={self.split} dir={self.export_dir}"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        path = self.export_dir / self.csv.at[idx, "image_path"]
        sample: dict[str, Any] = {"idx": idx, "lab": self.labels[idx], "img": read_image(path)[None, ...]}
        return xrv.datasets.apply_transforms(xrv.datasets.apply_transforms(sample, self.transform), self.data_aug)


def read_image(path: Path) -> np.ndarray:
    """One exported image as a 2-D float32 array in [-1024, 1024], as TorchXRayVision reads it."""
    if path.suffix == ".dcm":
        # medlake's reader: xrv.utils.read_xray_dcm, with the fixes for files without File Meta,
        # MONOCHROME1 and pixels above their declared bit depth (see medlake.pacs.model.inference).
        from medlake.pacs.model.inference import load_xray

        image, _warnings = load_xray(path)
        return image
    import skimage.io

    image = skimage.io.imread(path)
    if image.ndim > 2:
        image = image[..., :3].mean(axis=2)
    maximum = 65535 if image.dtype == np.uint16 else 255
    return xrv.utils.normalize(image, maximum).astype(np.float32)
