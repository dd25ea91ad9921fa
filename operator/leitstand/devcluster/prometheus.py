"""Finds Debian's prometheus and promtool, unpacked by ``hack/debian-prometheus.sh`` (``make prometheus``)."""

import os
from pathlib import Path

from leitstand import locations
from leitstand.errors import UserError


def locate(name: str) -> Path:
    """``prometheus`` or ``promtool`` from the cache; a UserError saying how to get it otherwise."""
    path = locations.cache_home() / "debian" / "prometheus" / "usr" / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise UserError(f"{name} is not unpacked at {path}; run `make prometheus` (bash hack/debian-prometheus.sh)")
    return path
