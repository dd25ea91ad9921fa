"""Running the real operator (``leitstand run``) as a subprocess in e2e tests."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from leitstand.devcluster import cluster


class Operator:
    """One ``leitstand run`` process; ``stop`` ends it (SIGTERM), ``kill`` like a crash (SIGKILL)."""

    def __init__(self, kubeconfig: Path, log: Path, *, env: dict[str, str] | None = None) -> None:
        self.port = cluster.free_port()
        self.log = log
        with log.open("ab") as stream:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "leitstand", "run", "--kubeconfig", str(kubeconfig),
                 "--http-port", str(self.port), "--verbose"],
                stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "LEITSTAND_CYCLE_INTERVAL_SECONDS": "1", **(env or {})},
            )  # fmt: skip
        self.identity = ""

    def wait_ready(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the operator exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the operator was not ready within {within:.0f} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
