"""examples/: each example runs on a real lake (a real PACS run into a real Orthanc, a real dbt build)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medlake.devtools import synth
from medlake.lake import landing
from medlake.warehouse import dbt_runner

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.orthanc
@pytest.mark.torch
def test_lake_tour_plots_labels_model_runs_and_thumbnails_from_orthanc(orthanc_factory, orthanc_env, tmp_path):
    from medlake.pacs.loop import run as pacs_run

    delivery, lake, out = tmp_path / "delivery", tmp_path / "lake", tmp_path / "tour"
    synth.generate(delivery, exams=60, seed=5, dicom_exams=3, progress=False)
    landing.land(delivery, lake, delivery_date=dt.date(2021, 12, 1), progress=False)
    orthanc_env(orthanc_factory())
    summary = pacs_run.run(delivery / "images", lake, allow_untrained=True, results_dir=tmp_path / "r", progress=False)
    assert summary.ok
    dbt_runner.build(lake, full_refresh=False, select=None, docs=False, quiet=True)

    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "lake_tour.py"), "--lake", str(lake), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "3 thumbnails" in done.stdout, done.stdout
    for name in ("label_counts.png", "model_runs.png", "thumbnails.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name


def test_lake_tour_on_a_folder_that_is_not_a_lake_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "lake_tour.py"), "--lake", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")},
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "no warehouse at" in done.stderr
