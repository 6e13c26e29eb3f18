"""A tour of a lake from Python: label counts, model-run figures, and thumbnails from Orthanc.

    .venv/bin/python examples/lake_tour.py --lake data/demo/lake --out data/demo/tour

Writes three PNGs into --out and prints what it wrote. Thumbnails come from the Orthanc that
``medlake orthanc start`` runs for the lake (its URL and password from the same environment as
``medlake pacs run``); without a reachable Orthanc the thumbnails are left out, with a reason.
Everything is read through ``medlake.open``: read-only, pseudonyms only.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, not a window
import matplotlib.pyplot as plt

import medlake
from medlake.errors import MedlakeError

LABELS_SQL = """
select label, count(distinct exam_key) as exams
from marts.bridge_exam_labels
where is_positive
group by label
order by exams desc, label
limit 15
"""
RUNS_SQL = """
select run_id, model_name, weights_trained, images_total, images_ok, images_failed, srs_stored, images_skipped
from marts.fct_model_runs
order by started_at
"""
IMAGES_SQL = """
select orthanc_instance_id, sop_instance_uid
from marts.dim_images
where orthanc_instance_id is not null and modality in ('CR', 'DX')
order by sop_instance_uid
limit ?
"""


def plot_label_counts(lake, out: Path) -> Path:
    labels = lake.sql(LABELS_SQL)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(labels["label"][::-1], labels["exams"][::-1], color="#3b7dd8")
    ax.set_xlabel("exams with a positive label")
    ax.set_title("Positive labels per exam (top 15)")
    fig.tight_layout()
    path = out / "label_counts.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_model_runs(lake, out: Path) -> Path:
    runs = lake.sql(RUNS_SQL)
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [f"{run[-8:]}" for run in runs["run_id"]]
    ax.bar(names, runs["images_ok"], label="classified", color="#2e9d5b")
    ax.bar(names, runs["images_skipped"], bottom=runs["images_ok"], label="skipped by the gate", color="#c9a227")
    stacked = runs["images_ok"] + runs["images_skipped"]
    ax.bar(names, runs["images_failed"], bottom=stacked, label="failed", color="#c0392b")
    untrained = not runs["weights_trained"].all() if len(runs) else False
    ax.set_title("Model runs" + (" (UNTRAINED weights: pipeline output, not findings)" if untrained else ""))
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    path = out / "model_runs.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_thumbnails(lake, out: Path, limit: int) -> tuple[Path | None, str]:
    from medlake.pacs.orthanc.client import OrthancClient, OrthancSettings

    images = lake.sql(IMAGES_SQL, [limit])
    if images.empty:
        return None, "no image of the lake is in Orthanc (run `medlake pacs run` first)"
    try:
        client = OrthancClient(OrthancSettings.from_env())
        previews = [client.preview(instance_id) for instance_id in images["orthanc_instance_id"]]
        client.close()
    except MedlakeError as exc:
        return None, f"thumbnails left out: {exc}"
    columns = min(4, len(previews))
    rows = -(-len(previews) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.5 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, png, uid in zip(axes.flat, previews, images["sop_instance_uid"], strict=False):
        ax.imshow(plt.imread(io.BytesIO(png)), cmap="gray")
        ax.set_title(f"...{uid[-10:]}", fontsize=7)
    fig.suptitle("Images in Orthanc (its own previews)")
    fig.tight_layout()
    path = out / "thumbnails.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path, f"{len(previews)} thumbnails"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, required=True, help="a built lake (medlake land + medlake build)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--thumbnails", type=int, default=8, help="how many images to show from Orthanc")
    args = parser.parse_args(argv)
    try:
        with medlake.open(args.lake) as lake:
            args.out.mkdir(parents=True, exist_ok=True)
            written = [plot_label_counts(lake, args.out), plot_model_runs(lake, args.out)]
            thumbnails, note = plot_thumbnails(lake, args.out, args.thumbnails)
    except MedlakeError as exc:
        print(f"lake_tour: {exc}", file=sys.stderr)
        return 1
    for path in [*written, thumbnails]:
        if path is not None:
            print(f"wrote {path}")
    print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
