"""`medlake bench`'s PACS loop figures: the streamed loop against inference alone, on synthetic chest CRs.

* ``pacs_inference_only_images_per_s``: decode + preprocess + forward over the images, nothing else;
* ``pacs_loop_images_per_s``: the back half of ``pacs run`` over the same images (already-reported
  check, classify, SRs built in processes and stored as built, predictions landed in batches),
  against a real Orthanc, from the first lookup to the last landed batch;
* ``pacs_loop_vs_inference_only``: their ratio (issue 8's target: >= 0.8);
* ``sr_build_per_s``: one process building SRs back to back (the cost the SR workers spread).

Same classifier (loaded once) for both; the images are stored in Orthanc before timing starts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PACS_LOOP_IMAGES = 200
SR_BUILD_SAMPLE = 20


def write_images(directory: Path, count: int) -> list[Path]:
    """``count`` synthetic chest CRs (320x256, PA, CHEST), 20 to a study."""
    from medlake.devtools import synth

    return synth.write_chest_cr_series(directory, count, seed=11, name="loop", images_per_study=20)


def _sr_build_rate(classifier, files: list[Path]) -> float:
    import datetime as dt

    from medlake.pacs.loop.reporting import findings_for
    from medlake.pacs.loop.sources import read_source_header
    from medlake.pacs.sr import builder as sr_builder

    headers = [read_source_header(path) for path in files[:SR_BUILD_SAMPLE]]
    findings = findings_for(classifier, [0.25] * len(classifier.pathologies))
    run_at = dt.datetime.now(dt.UTC)
    sr_builder.build_sr(headers[0], findings, classifier.identity, run_at=run_at, instance_number=1)  # warm-up
    start = time.perf_counter()
    for number, header in enumerate(headers, start=1):
        sr_builder.build_sr(header, findings, classifier.identity, run_at=run_at, instance_number=number)
    return len(headers) / (time.perf_counter() - start)


def run(figures: dict, notes: list[str], workdir: Path) -> None:
    from medlake.pacs.loop import run as loop
    from medlake.pacs.model import inference, weights
    from medlake.pacs.orthanc.server import OrthancServer, find_free_port

    files = write_images(workdir / "pacs_loop_images", PACS_LOOP_IMAGES)
    classifier = inference.Classifier(weights.resolve(None, allow_untrained=True))
    classifier.classify_paths(files[:8], batch_size=8)  # warm-up: thread pools, allocator
    start = time.perf_counter()
    classifier.classify_paths(files, batch_size=8)
    inference_only = len(files) / (time.perf_counter() - start)

    with OrthancServer(port=find_free_port(), storage=workdir / "orthanc_pacs_loop") as server:
        previous = {key: os.environ.get(key) for key in ("ORTHANC_URL", "ORTHANC_USERNAME", "ORTHANC_PASSWORD")}
        os.environ.update(ORTHANC_URL=server.url, ORTHANC_USERNAME=server.username, ORTHANC_PASSWORD=server.password)
        try:
            summary = loop.run(
                workdir / "pacs_loop_images",
                workdir / "pacs_loop_lake",
                allow_untrained=True,
                results_dir=workdir / "pacs_loop_results",
                progress=False,
                classifier=classifier,
            )
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    if not summary.ok:
        notes.append(f"pacs loop bench: run not OK: {summary.counts()}")
    loop_s = summary.timings_s.get("report_s") or 0.0
    figures["pacs_loop_images"] = summary.images_classified
    figures["pacs_inference_only_images_per_s"] = round(inference_only, 2)
    figures["pacs_loop_images_per_s"] = round(summary.images_classified / loop_s, 2) if loop_s else None
    if figures["pacs_loop_images_per_s"]:
        figures["pacs_loop_vs_inference_only"] = round(figures["pacs_loop_images_per_s"] / inference_only, 3)
    figures["pacs_run_end_to_end_images_per_s"] = round(summary.images_per_s, 2)
    figures["sr_build_per_s"] = round(_sr_build_rate(classifier, files), 2)
    figures["sr_workers"] = os.cpu_count()
    notes.append(
        f"pacs loop: {summary.images_classified} images, stage seconds {summary.timings_s} "
        "(sr_build_s and sr_upload_s are summed over workers, not wall time)"
    )
