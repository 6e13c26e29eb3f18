"""How much memory (and which spill directory) DuckDB may use while dbt builds a lake.

DuckDB's own default is 80 % of the machine, counted per process and not including what dbt and
Python hold beside it; at 10 M exams a build reached 20.6 GB on a 24 GB machine and was killed by
the kernel. So ``medlake build`` caps DuckDB (``memory_limit`` in ``profiles.yml``) at half the
memory this machine (or its cgroup) has, unless ``MEDLAKE_DUCKDB_MEMORY_LIMIT`` says otherwise
(any DuckDB size: ``6GB``, ``800MB``). Past the cap DuckDB spills to ``LAKE/.building/spill``
(the build's scratch folder, deleted with it), so the spill counts against the lake's disk, not
/tmp. ``preserve_insertion_order=false`` (profiles.yml) lets large inserts stream instead of
buffering rows to keep their order: no mart promises a row order.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from medlake.warehouse import warehouse_swap

MEMORY_LIMIT_VARIABLE = "MEDLAKE_DUCKDB_MEMORY_LIMIT"
TEMP_DIRECTORY_VARIABLE = "MEDLAKE_DUCKDB_TEMP_DIRECTORY"
SPILL_DIR = "spill"
DEFAULT_SHARE = 0.5
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


def available_memory_bytes() -> int:
    """The machine's memory, or the cgroup's limit when that is lower (a container)."""
    total = psutil.virtual_memory().total
    try:
        text = CGROUP_MEMORY_MAX.read_text().strip()
    except OSError:
        return total
    return min(total, int(text)) if text.isdigit() else total


def default_memory_limit() -> str:
    """Half of :func:`available_memory_bytes`, in whole MB (DuckDB's syntax)."""
    return f"{int(available_memory_bytes() * DEFAULT_SHARE) // 2**20}MB"


def memory_limit() -> str:
    """The cap this build uses: ``$MEDLAKE_DUCKDB_MEMORY_LIMIT`` or the default."""
    return os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip() or default_memory_limit()


def spill_directory(lake: Path) -> Path:
    return lake / warehouse_swap.BUILDING_DIR / SPILL_DIR


def dbt_environment(lake: Path) -> dict[str, str]:
    """The variables profiles.yml reads for the DuckDB target."""
    return {MEMORY_LIMIT_VARIABLE: memory_limit(), TEMP_DIRECTORY_VARIABLE: str(spill_directory(lake))}
