"""Disk honesty (issue 19 item 4): land and build refuse, in one line and before writing, when the
lake's filesystem cannot take what they are about to write. Real full filesystems: a small tmpfs
mounted for the test (root only; skipped with the reason otherwise), and the margin setting."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medlake.devtools import synth
from medlake.errors import DiskSpaceError
from medlake.lake import disk_space, landing
from medlake.lake import layout as lake_layout
from medlake.warehouse import dbt_runner

SCRIPTS_DIR = Path(dbt_runner.__file__).resolve().parents[2]


@contextlib.contextmanager
def small_filesystem(path: Path, size: str):
    """A tmpfs of ``size`` at ``path`` for the test's duration (a real ENOSPC, not a mock)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("disk_space") / "delivery"
    synth.generate(out, exams=20_000, seed=7, dicom_exams=0, progress=False, workers=1)
    return out


def test_land_onto_a_filesystem_too_small_refuses_in_one_line_and_writes_nothing(delivery, tmp_path, monkeypatch):
    monkeypatch.setenv(disk_space.MIN_FREE_VARIABLE, "0")
    with small_filesystem(tmp_path / "small", "1m") as small:
        lake = small / "lake"
        env = {**os.environ, "PYTHONPATH": str(SCRIPTS_DIR) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        result = subprocess.run(
            [sys.executable, "-m", "medlake", "land", "--input", str(delivery), "--lake", str(lake), "--no-progress"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "not enough free disk for landing" in lines[0], result.stderr
        assert "Traceback" not in result.stderr
        assert list(small.iterdir()) == [], "a refused landing wrote into the lake"


def test_the_margin_setting_refuses_a_landing_that_would_fit(delivery, tmp_path, monkeypatch):
    monkeypatch.setenv(disk_space.MIN_FREE_VARIABLE, str(10**12))
    with pytest.raises(DiskSpaceError, match=disk_space.MIN_FREE_VARIABLE):
        landing.land(delivery, tmp_path / "lake", workers=1, progress=False)
    assert not (tmp_path / "lake").exists()
    monkeypatch.setenv(disk_space.MIN_FREE_VARIABLE, "lots")
    with pytest.raises(DiskSpaceError, match="number of MB"):
        landing.land(delivery, tmp_path / "lake", workers=1, progress=False)


def test_an_incremental_build_refuses_when_the_warehouse_copy_would_not_fit(delivery, tmp_path, monkeypatch):
    """The copy of the live warehouse doubles it for a moment: counted before the build starts."""
    monkeypatch.setenv(disk_space.MIN_FREE_VARIABLE, "0")
    with small_filesystem(tmp_path / "small", "64m") as small:
        lake = small / "lake"
        landing.land(delivery, lake, workers=1, progress=False)
        try:
            dbt_runner.build(lake, docs=False, quiet=True)
            live = lake_layout.warehouse_path(lake)
            before = live.read_bytes()
            # leave a little less free than a copy of the warehouse needs
            filler = small / "filler"
            free = shutil.disk_usage(small).free
            with filler.open("wb") as handle:
                handle.truncate(0)
                handle.write(b"\0" * max(0, free - len(before) // 2))
            with pytest.raises(DiskSpaceError, match="incremental build"):
                dbt_runner.build(lake, docs=False, quiet=True)
            assert live.read_bytes() == before
            assert not (lake / ".building").exists()
            filler.unlink()
            dbt_runner.build(lake, docs=False, quiet=True)  # with the space back, it builds
        finally:
            shutil.rmtree(dbt_runner.target_path_for(lake), ignore_errors=True)
