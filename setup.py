"""Ship the dbt project inside the wheel, so an installed (non-editable) medlake can build a warehouse.

Everything else is in pyproject.toml. An editable install needs no copy: medlake.settings finds
the checkout's project first.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# What dbt reads (dbt_project.yml's *-paths, plus the profile).
DBT_PROJECT_PARTS = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "analyses", "tests/dbt")


class BuildPyWithDbtProject(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib, "medlake", "dbt_project")
        for part in DBT_PROJECT_PARTS:
            source = Path(part)
            if source.is_dir():
                shutil.copytree(source, target / part, dirs_exist_ok=True)
            elif source.is_file():
                (target / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / part)


setup(cmdclass={"build_py": BuildPyWithDbtProject})
