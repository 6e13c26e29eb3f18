"""Optional parts of medlake: ``pip install medlake`` is the lake; ``medlake[pacs]`` adds the PACS loop.

A command that needs an extra checks for it first and stops with one clear line (never an
ImportError traceback). The check looks modules up without importing them (torch takes
seconds to import).
"""

from __future__ import annotations

import importlib.util

from medlake.errors import MissingExtraError

# Top-level modules the PACS extra installs (pyproject.toml [project.optional-dependencies] pacs).
PACS_MODULES = ("torch", "torchvision", "torchxrayvision", "highdicom", "pyorthanc", "httpx")
PACS_INSTALL = "pip install 'medlake[pacs]'"


def missing(modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` cannot be imported here."""
    absent = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            absent.append(module)
    return absent


def has_pacs() -> bool:
    return not missing(PACS_MODULES)


def require_pacs(command: str) -> None:
    """Raise :class:`MissingExtraError` naming the install command when the PACS extra is absent."""
    absent = missing(PACS_MODULES)
    if absent:
        raise MissingExtraError(
            f"`{command}` needs the PACS extra (missing: {', '.join(absent)}); install it with: {PACS_INSTALL}"
        )
