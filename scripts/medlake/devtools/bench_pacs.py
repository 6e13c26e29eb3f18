"""`medlake bench`'s PACS loop figures, on two image sizes: synthetic 320x256 CRs and 2048x2048 ones.

Per size (keys suffixed ``_2048`` for the detector-size set; the synthetic set keeps the old names):

* ``pacs_forward_only_images_per_s``: the DenseNet forward pass alone, on preprocessed arrays;
* ``pacs_inference_only_images_per_s``: decode + preprocess + forward over the files, nothing else;
* ``pacs_inference_vs_forward_only``: their ratio (issue 17's target on detector-size images: >= 0.8);
* ``pacs_loop_images_per_s``: the back half of ``pacs run`` over the same images (already-reported
  check, classify, SRs patched from the template and stored as built, predictions landed in batches),
  against a real Orthanc, from the first lookup to the last landed batch;
* ``pacs_loop_vs_inference_only``: loop against inference alone (target >= 0.8);
* ``pacs_run_s`` / ``pacs_watch_s`` and ``pacs_watch_vs_run``: the whole ``pacs run`` (upload, gate,
  report) against ``pacs watch --once`` over the same images pushed to another Orthanc (gate on
  tags, download, report); target: watch within 10 % of run (ratio <= 1.1);
* ``pacs_stage_cpu_ms``: CPU milliseconds per image of each stage alone (process CPU time, all
  threads): decode, resize (TorchXRayVision's), forward (batch 8), highdicom SR build, template SR.

Same classifier (loaded once) everywhere; images are written before any timing starts.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

PACS_LOOP_IMAGES = 200
DETECTOR_IMAGES = 40
STAGE_SAMPLE = 16
SIZES = {"": (320, 256, PACS_LOOP_IMAGES), "_2048": (2048, 2048, DETECTOR_IMAGES)}


def write_images(directory: Path, count: int, rows: int = 320, columns: int = 256) -> list[Path]:
    """``count`` synthetic chest CRs (PA, CHEST), 20 to a study."""
    from medlake.devtools import synth

    return synth.write_chest_cr_series(
        directory, count, seed=11, name="loop", images_per_study=20, rows=rows, columns=columns
    )


class _OrthancEnv:
    """ORTHANC_* pointed at one server for the duration of a block (the loop reads the environment)."""

    KEYS = ("ORTHANC_URL", "ORTHANC_USERNAME", "ORTHANC_PASSWORD")

    def __init__(self, server) -> None:
        self.server = server

    def __enter__(self):
        self.previous = {key: os.environ.get(key) for key in self.KEYS}
        os.environ.update(
            ORTHANC_URL=self.server.url, ORTHANC_USERNAME=self.server.username, ORTHANC_PASSWORD=self.server.password
        )
        return self

    def __exit__(self, *exc: object) -> None:
        for key, value in self.previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cpu_ms_per_item(call, items) -> float:
    started = time.process_time()
    for item in items:
        call(item)
    return round((time.process_time() - started) / max(1, len(items)) * 1000, 1)


def stage_cpu_ms(classifier, files: list[Path]) -> dict[str, float]:
    """CPU ms per image of each stage alone, on ``files[:STAGE_SAMPLE]``."""
    import numpy as np
    import torchxrayvision as xrv

    from medlake.pacs.loop.reporting import findings_for
    from medlake.pacs.loop.sources import read_source_header
    from medlake.pacs.model import inference
    from medlake.pacs.sr import builder as sr_builder
    from medlake.pacs.sr import template as sr_template

    sample = files[:STAGE_SAMPLE]
    decoded = [inference.load_xray(path)[0] for path in sample]  # warm-up and inputs of the next stages
    cropped = [xrv.datasets.XRayCenterCrop()(image[None, ...]) for image in decoded]
    resizer = xrv.datasets.XRayResizer(inference.INPUT_SIZE)
    arrays = np.stack([resizer(image).astype(np.float32) for image in cropped])
    batches = [arrays[i : i + 8] for i in range(0, len(arrays), 8)]
    headers = [read_source_header(path) for path in sample]
    findings = findings_for(classifier, [0.25] * len(classifier.pathologies))
    run_at = dt.datetime.now(dt.UTC)
    templates = sr_template.SrTemplates()
    templates.build(headers[0], findings, classifier.identity, run_at=run_at, instance_number=1)  # built once
    classifier.predict(batches[0])  # warm-up
    forward_ms = _cpu_ms_per_item(classifier.predict, batches) / 8
    return {
        "decode": _cpu_ms_per_item(lambda path: inference.load_xray(path), sample),
        "resize": _cpu_ms_per_item(resizer, cropped),
        "forward": round(forward_ms, 1),
        "sr_highdicom": _cpu_ms_per_item(
            lambda header: sr_builder.build_sr(header, findings, classifier.identity, run_at=run_at, instance_number=1),
            headers,
        ),
        "sr_template": _cpu_ms_per_item(
            lambda header: templates.build(header, findings, classifier.identity, run_at=run_at, instance_number=1),
            headers,
        ),
    }


def _forward_only_rate(classifier, files: list[Path]) -> float:
    from medlake.pacs.model import inference

    images = inference.preprocess_paths(files)
    classifier.forward(images[:8])  # warm-up
    start = time.perf_counter()
    classifier.forward(images, batch_size=8)
    return len(images) / (time.perf_counter() - start)


def _watch_once(classifier, files: list[Path], workdir: Path, tag: str) -> tuple[float, object]:
    """Push ``files`` into a fresh Orthanc (StableAge 1 s), wait until stable, time ``pacs watch --once``."""
    from medlake.pacs.loop import watch as watch_loop
    from medlake.pacs.orthanc.server import OrthancServer, find_free_port

    with OrthancServer(port=find_free_port(), storage=workdir / f"orthanc_watch{tag}", stable_age_s=1) as server:
        with server.client() as client:
            client.upload_files(files, workers=4)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                changes = client.changes(0, limit=10000).get("Changes", [])
                stable = {c["ID"] for c in changes if c.get("ChangeType") == "StableSeries"}
                series = {c["ID"] for c in changes if c.get("ChangeType") == "NewSeries"}
                if series and stable >= series:
                    break
                time.sleep(0.5)
        with _OrthancEnv(server):
            start = time.perf_counter()
            summary = watch_loop.watch(
                workdir / f"pacs_watch_lake{tag}",
                once=True,
                allow_untrained=True,
                results_dir=workdir / f"pacs_watch_results{tag}",
                classifier=classifier,
                page_size=100,
            )
            return time.perf_counter() - start, summary


def _one_size(
    classifier, figures: dict, notes: list[str], workdir: Path, tag: str, rows: int, columns: int, count: int
):
    from medlake.pacs.loop import run as loop
    from medlake.pacs.orthanc.server import OrthancServer, find_free_port

    images_dir = workdir / f"pacs_loop_images{tag}"
    files = write_images(images_dir, count, rows, columns)
    os.sync()
    classifier.classify_paths(files[:8], batch_size=8)  # warm-up: thread pools, allocator, page cache
    start = time.perf_counter()
    classifier.classify_paths(files, batch_size=8)
    inference_only = len(files) / (time.perf_counter() - start)
    forward_only = _forward_only_rate(classifier, files)

    server = OrthancServer(port=find_free_port(), storage=workdir / f"orthanc_pacs_loop{tag}")
    with server, _OrthancEnv(server):
        start = time.perf_counter()
        summary = loop.run(
            images_dir,
            workdir / f"pacs_loop_lake{tag}",
            allow_untrained=True,
            results_dir=workdir / f"pacs_loop_results{tag}",
            progress=False,
            classifier=classifier,
        )
        run_s = time.perf_counter() - start
    watch_s, watched = _watch_once(classifier, files, workdir, tag)
    if not summary.ok:
        notes.append(f"pacs loop bench{tag}: run not OK: {summary.counts()}")
    if watched.images_classified != summary.images_classified:
        notes.append(f"pacs watch bench{tag}: classified {watched.images_classified} of {summary.images_classified}")
    loop_s = summary.timings_s.get("report_s") or 0.0
    figures[f"pacs_images{tag}"] = f"{count} x {rows}x{columns}"
    figures[f"pacs_loop_images{tag}"] = summary.images_classified
    figures[f"pacs_forward_only_images_per_s{tag}"] = round(forward_only, 2)
    figures[f"pacs_inference_only_images_per_s{tag}"] = round(inference_only, 2)
    figures[f"pacs_inference_vs_forward_only{tag}"] = round(inference_only / forward_only, 3)
    figures[f"pacs_loop_images_per_s{tag}"] = round(summary.images_classified / loop_s, 2) if loop_s else None
    if figures[f"pacs_loop_images_per_s{tag}"]:
        figures[f"pacs_loop_vs_inference_only{tag}"] = round(
            figures[f"pacs_loop_images_per_s{tag}"] / inference_only, 3
        )
    figures[f"pacs_run_end_to_end_images_per_s{tag}"] = round(summary.images_per_s, 2)
    figures[f"pacs_run_s{tag}"] = round(run_s, 2)
    figures[f"pacs_watch_s{tag}"] = round(watch_s, 2)
    figures[f"pacs_watch_vs_run{tag}"] = round(watch_s / run_s, 3)
    figures[f"pacs_stage_cpu_ms{tag}"] = stage_cpu_ms(classifier, files)
    notes.append(
        f"pacs loop{tag}: {summary.images_classified} images, stage seconds {summary.timings_s} "
        "(sr_build_s and sr_upload_s are summed over threads, not wall time)"
    )


def run(figures: dict, notes: list[str], workdir: Path) -> None:
    from medlake.pacs.model import inference, weights

    classifier = inference.Classifier(weights.resolve(None, allow_untrained=True))
    for tag, (rows, columns, count) in SIZES.items():
        _one_size(classifier, figures, notes, workdir, tag, rows, columns, count)
    figures["sr_workers"] = 0  # SRs are patched from the template in a thread of the loop's process
    notes.append(f"pacs bench: load average {os.getloadavg()} at the end (2 cores, shared machine)")
