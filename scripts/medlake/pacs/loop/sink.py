"""Landing a PACS run into the lake in small batches: gate decisions, uploads, predictions, runs.

Each batch is one part file per table (``part-<run id>-<batch no>``), written atomically, so a
run killed between batches leaves every earlier batch intact and nothing half-written. The
sink also knows which instances already have predictions in the lake for the model identity
(read once at start, kept current as it lands): that is what makes a re-run or a restarted
``watch`` land every prediction exactly once.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from medlake.errors import LakeError
from medlake.lake import layout as lake_io
from medlake.lake.raw_schema import RAW_TABLES


class LakeSink:
    """Writes one run's rows as numbered batches; thread-safe."""

    def __init__(self, lake: Path, run_id: str, delivery_date: dt.date) -> None:
        self.lake = lake
        self.run_id = run_id
        self.delivery_date = delivery_date
        self._batch = 0
        self._lock = threading.Lock()
        self._predicted: dict[str, list[dict]] | None = None
        self._weights_sha256: str | None = None
        self.parts: list[Path] = []

    def write(self, tables: dict[str, Sequence[dict]]) -> None:
        """Write one batch: every non-empty table as one part file under the same batch number."""
        with self._lock:
            self._batch += 1
            batch_id = f"{self.run_id}-{self._batch:05d}"
            try:
                for table, rows in tables.items():
                    if not rows:
                        continue
                    written = lake_io.write_part(
                        self.lake,
                        table,
                        pa.Table.from_pylist(list(rows), schema=RAW_TABLES[table]),
                        self.delivery_date,
                        batch_id,
                    )
                    if written is not None:
                        self.parts.append(written)
            except OSError as exc:
                raise LakeError(f"cannot write PACS results to {self.lake}: {exc.strerror or exc}") from exc
            for row in tables.get("predictions", ()):
                if self._predicted is not None and row["weights_sha256"] == self._weights_sha256:
                    self._predicted.setdefault(row["sop_instance_uid"], []).append(row)

    # --- what the lake already holds ---------------------------------------------------------

    def load_predicted(self, weights_sha256: str) -> None:
        """Index the predictions already in the lake for these weights (sop uid -> rows)."""
        directory = lake_io.raw_dir(self.lake, "predictions")
        files = sorted(str(p) for p in directory.rglob("*.parquet") if p.name != "schema.parquet")
        predicted: dict[str, list[dict]] = {}
        if files:
            dataset = ds.dataset(files, schema=RAW_TABLES["predictions"], format="parquet")
            table = dataset.to_table(
                columns=["sop_instance_uid", "pathology", "score", "threshold", "is_positive", "run_id"],
                filter=ds.field("weights_sha256") == weights_sha256,
            )
            for row in table.to_pylist():
                predicted.setdefault(row["sop_instance_uid"], []).append(row)
        with self._lock:
            self._predicted = predicted
            self._weights_sha256 = weights_sha256

    def predictions_for(self, sop_instance_uid: str) -> list[dict]:
        """Landed predictions of one instance for this run's weights, one per pathology (first landed)."""
        with self._lock:
            rows = list((self._predicted or {}).get(sop_instance_uid, ()))
        first: dict[str, dict] = {}
        for row in rows:
            first.setdefault(row["pathology"], row)
        return list(first.values())
