"""Where medlake finds things it does not create: settings from the environment, with defaults.

``dbt_project_dir()``: the dbt project medlake builds the warehouse with. In order:
``$MEDLAKE_DBT_PROJECT_DIR``; the checkout this package runs from (an editable install or
``PYTHONPATH=scripts``); the copy shipped inside the package (``medlake/dbt_project``, put
there by ``setup.py`` when a wheel is built), so ``pip install .`` works without the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

DBT_PROJECT_ENV = "MEDLAKE_DBT_PROJECT_DIR"
PROJECT_FILE = "dbt_project.yml"
PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parents[1]  # scripts/medlake -> the repository
PACKAGED_PROJECT_DIR = PACKAGE_DIR / "dbt_project"


def dbt_project_dir() -> Path:
    """The dbt project directory (see the module doc); the checkout's path when none is found."""
    configured = os.environ.get(DBT_PROJECT_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    for candidate in (CHECKOUT_DIR, PACKAGED_PROJECT_DIR):
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    return CHECKOUT_DIR
