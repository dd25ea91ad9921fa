"""``leitstand demo`` (``make demo``): the dev cluster, the operator and the examples.

Builds what is missing, starts the ``dev`` profile on a local control plane,
runs the real operator entry point (``leitstand run``) against it, applies
``deploy/examples/`` with kubectl, and prints where to look. Ctrl-C (or
SIGTERM) stops the operator and the cluster; nothing is left running.
"""

import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from leitstand import locations
from leitstand.cli import dev_cluster
from leitstand.devcluster import binaries, cluster
from leitstand.errors import UserError

console = dev_cluster.console


def _examples_dir() -> Path:
    root = locations.source_root()
    if root is None:
        raise UserError("`leitstand demo` runs from a source checkout (it applies deploy/examples/)")
    return root / "deploy" / "examples"


def demo(
    profile: Annotated[str, typer.Option(help="Cluster profile to start.")] = "dev",
    http_port: Annotated[int | None, typer.Option(help="Operator HTTP port (default: a free one).")] = None,
    exit_after: Annotated[
        float | None,
        typer.Option(help="Stop by itself after this many seconds (for scripted runs)."),
    ] = None,
) -> None:
    """Start the dev cluster and the operator, apply the examples, and keep running until Ctrl-C."""
    examples = _examples_dir()
    if http_port is not None:
        cluster.ensure_port_free(http_port, "--http-port")
    port = http_port or cluster.free_port()
    dev_cluster.stop_on_ctrl_c_and_sigterm()
    local = dev_cluster.start("demo", profile, port=None, apiserver_args=[], detached=False)
    operator: subprocess.Popen[bytes] | None = None
    try:
        log_path = local.directory / "logs" / "operator.log"
        with log_path.open("ab") as log:
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "leitstand",
                    "run",
                    "--kubeconfig",
                    str(local.kubeconfig),
                    "--http-port",
                    str(port),
                    "--verbose",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=cluster.die_with_parent,
            )
        console.print(f"  operator running (log: {log_path})")
        kubectl = binaries.locate("kubectl")
        applied = subprocess.run(
            [str(kubectl), "--kubeconfig", str(local.kubeconfig), "apply", "-f", str(examples)],
            capture_output=True,
            text=True,
            check=False,
        )
        if applied.returncode != 0:
            raise UserError(f"applying {examples} failed: {applied.stderr.strip()}")
        for line in applied.stdout.splitlines():
            console.print(f"  {line}")
        console.print()
        console.print("[bold]Leitstand demo is running.[/] Look at it with:")
        console.print(f"  {kubectl} --kubeconfig {local.kubeconfig} get pods -A -o wide")
        console.print(f"  metrics: http://127.0.0.1:{port}/metrics")
        console.print(f"  operator log: {log_path}")
        console.print("Press Ctrl-C to stop everything.")
        started = time.monotonic()
        while exit_after is None or time.monotonic() - started < exit_after:
            local.check_alive()
            if operator.poll() is not None:
                raise UserError(f"the operator exited with code {operator.returncode}; see {log_path}")
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("Stopping…")
    finally:
        if operator is not None and operator.poll() is None:
            operator.terminate()
            try:
                operator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
        local.stop()
