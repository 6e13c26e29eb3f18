"""Training sets from the lake: ``medlake dataset export`` and a PyTorch dataset that reads them.

``export_dataset`` needs only the lake (DuckDB, pyarrow, pydicom, dicognito). ``LakeDataset``
needs torch and torchxrayvision (the ``.[pacs]`` install) and is imported only when asked for,
so ``import medlake.dataset`` works on a lake-only install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medlake.dataset.export import ExportSummary, export_dataset
from medlake.dataset.filters import ExportFilters
from medlake.dataset.splits import Split, SplitSpec

if TYPE_CHECKING:
    from medlake.dataset.torch_dataset import LakeDataset

__all__ = ["ExportFilters", "ExportSummary", "LakeDataset", "Split", "SplitSpec", "export_dataset"]


def __getattr__(name: str) -> Any:
    if name == "LakeDataset":
        from medlake.extras import require_pacs

        require_pacs("medlake.dataset.LakeDataset")
        from medlake.dataset.torch_dataset import LakeDataset

        return LakeDataset
    raise AttributeError(f"module 'medlake.dataset' has no attribute {name!r}")
