"""The main job behind `make run`: the whole product on a deterministic synthetic data set.

synth -> land -> dbt build + docs -> the analysts' two questions -> (Orthanc up -> pacs run ->
dbt build -> one data-scientist query joining exams, labels, images and model scores) -> a
de-identified training set exported from the lake.
Needs nothing from ../shared, so it works on a fresh clone.
"""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from pathlib import Path

DEMO_MONTH = "2021-12"
DEMO_LABELS = ("Covid", "Pneumonia", "Pleural Effusion")


def _banner(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 72 - len(title)), flush=True)


def run(workdir: Path, *, exams: int, seed: int, skip_pacs: bool) -> int:
    from medlake.devtools import synth
    from medlake.lake import landing
    from medlake.warehouse import dbt_runner, queries

    workdir = workdir.resolve()
    delivery = workdir / "delivery"
    lake = workdir / "lake"
    # A demo is a fresh, reproducible run: same seed, same answers.
    for stale in (delivery, lake, workdir / "results", workdir / "training_set"):
        shutil.rmtree(stale, ignore_errors=True)

    _banner(f"1. synthetic delivery: {exams} exams, seed {seed}")
    print(synth.generate(delivery, exams=exams, seed=seed, dicom_exams=None, progress=True).render())

    _banner("2. land raw JSON + image headers as Parquet")
    print(landing.land(delivery, lake, delivery_date=None, workers=None, progress=True).render())

    _banner("3. dbt build (staging -> intermediate -> marts, tests) + docs generate")
    dbt_runner.build(lake, full_refresh=False, select=None, docs=True)

    _banner(f"4. exams with a positive Covid label and no positive Pneumonia label in {DEMO_MONTH}")
    for basis in ("exam", "label"):
        print(queries.covid_without_pneumonia(lake, month=DEMO_MONTH, date_basis=basis).render())
    _banner("5. a sample of Chest exams with more than 5 labels, with their images")
    print(queries.chest_many_labels(lake, body_part="Chest", min_labels=6, limit=10).render())

    status = 0 if skip_pacs else _pacs_loop(workdir, delivery, lake)
    _export_training_set(workdir, lake, step=6 if skip_pacs else 10)
    return status


def _pacs_loop(workdir: Path, delivery: Path, lake: Path) -> int:
    from medlake.pacs.loop import run as pacs
    from medlake.pacs.orthanc.server import OrthancServer, find_free_port
    from medlake.warehouse import dbt_runner, queries

    with ExitStack() as stack:
        _banner("6. Orthanc PACS (Debian package, loopback only, auth on)")
        server = stack.enter_context(OrthancServer(port=find_free_port(), storage=workdir / "orthanc"))
        for name, value in server.client_env().items():  # URL + the storage whose password clients read
            stack.callback(_restore_env, name, os.environ.get(name))
            os.environ[name] = value
        print(f"Orthanc {server.url} (storage {workdir / 'orthanc'})")

        _banner("7. upload DICOMs -> TorchXRayVision -> DICOM SR -> Orthanc -> predictions in the lake")
        summary = pacs.run(
            delivery / "images",
            lake,
            weights_dir=None,
            allow_untrained=True,
            workers=4,
            batch_size=8,
            results_dir=workdir / "results",
            progress=True,
        )
        print(summary.render())

    _banner("8. dbt build with the predictions")
    dbt_runner.build(lake, full_refresh=False, select=None, docs=True)
    _banner("9. one query for a data scientist: exams + labels + images + model scores")
    print(queries.exams_with_predictions(lake, limit=10).render())
    return 0 if summary.ok else 1


def _export_training_set(workdir: Path, lake: Path, *, step: int) -> None:
    from medlake.dataset import ExportFilters, SplitSpec, export_dataset

    out = workdir / "training_set"
    _banner(f"{step}. a de-identified training set: Chest exams with an image, 3 label columns, split by patient")
    summary = export_dataset(
        lake,
        out,
        filters=ExportFilters(labels=DEMO_LABELS, body_part="Chest", require_image=True),
        split=SplitSpec(0.8, 0.1, 0.1, seed=0),
        progress=True,
        command=f"medlake dataset export --lake {lake} --out {out} --labels {','.join(DEMO_LABELS)} "
        "--body-part Chest --require-image --split 0.8,0.1,0.1 --seed 0",
    )
    print(summary.render())
    print(f"training set: {out} (manifest.parquet, images/, reports/, dataset.json, DATASET.md)")
    print(f"in PyTorch: medlake.dataset.LakeDataset({str(out)!r}, split='train')")


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
