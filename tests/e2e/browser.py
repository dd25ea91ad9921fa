"""Debian's chromium, headless, for the tests of the cluster map."""

import shutil
import subprocess
from pathlib import Path


def chromium(*args: str, user_data: Path) -> str:
    """Debian's chromium, headless, with the flags that keep it off the (closed) network."""
    binary = shutil.which("chromium")
    assert binary is not None, "chromium is not installed: run `make chromium`"
    result = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={user_data}", "--virtual-time-budget=10000", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
