"""Where Leitstand finds its data and keeps its caches.

Profiles and CRDs live at the repository root (``deploy/profiles``, ``crds``) so
people can read and edit them; a wheel ships copies under ``leitstand/_data``.
Each lookup prefers the source checkout, so an editable install always sees the
files being edited. Nothing here creates directories except ``ensure``-named
functions.
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def source_root() -> Path | None:
    """The repository checkout this package runs from, or None for a wheel install."""
    candidate = PACKAGE_DIR.parent.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "hack").is_dir():
        return candidate
    return None


def data_dir(name: str) -> Path:
    """The directory of shipped data ``name`` (``profiles`` or ``crds``)."""
    root = source_root()
    in_repo = {"profiles": "deploy/profiles", "crds": "crds", "stages": "deploy/kwok"}
    if root is not None:
        return root / in_repo[name]
    return PACKAGE_DIR / "_data" / name


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/leitstand`` (default ``~/.cache/leitstand``): safe to delete."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leitstand"


def state_home() -> Path:
    """``$XDG_STATE_HOME/leitstand`` (default ``~/.local/state/leitstand``): running clusters."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "leitstand"
