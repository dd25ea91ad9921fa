"""``leitstand demo`` (``make demo``): the site in small, the operator, the examples and their story.

Builds what is missing, starts the ``demo`` profile on a local control plane,
runs the real operator entry point (``leitstand run``) against it, applies
``deploy/examples/`` with kubectl, makes a read-only account for the cluster
map and prints its URL, then plays the scenario of ``cli.scenario`` step by
step (``--no-scenario`` leaves it out). Ctrl-C (or SIGTERM) stops the operator
and the cluster; nothing is left running.
"""

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from leitstand import locations
from leitstand.cli import dev_cluster, scenario, views
from leitstand.devcluster import binaries, cluster
from leitstand.errors import UserError
from leitstand.kube import connection, resources
from leitstand.kube.client import Client

console = dev_cluster.console


def _examples_dir() -> Path:
    root = locations.source_root()
    if root is None:
        raise UserError("`leitstand demo` runs from a source checkout (it applies deploy/examples/)")
    return root / "deploy" / "examples"


VIEWER = "leitstand-viewer"
VIEWER_NAMESPACE = "leitstand-system"
# Exactly the reads the status API checks (``api.server``): list GPUQuotas for queues, the cluster and the
# snapshot; list TrainingJobs for the jobs of a namespace.
VIEWER_RULES = [{"apiGroups": [resources.GROUP], "resources": ["gpuquotas", "trainingjobs"], "verbs": ["get", "list"]}]
RBAC = "/apis/rbac.authorization.k8s.io/v1"


async def viewer_token(client: Client) -> str:
    """A read-only ServiceAccount for the cluster map, bound to a ClusterRole of ``VIEWER_RULES``, and a token."""
    meta = {"name": VIEWER, "labels": {"app.kubernetes.io/name": "leitstand", "leitstand.dev/demo": "viewer"}}
    await client.ensure("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": VIEWER_NAMESPACE}})  # fmt: skip
    await client.ensure(f"/api/v1/namespaces/{VIEWER_NAMESPACE}/serviceaccounts",
                        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})  # fmt: skip
    await client.ensure(f"{RBAC}/clusterroles",
                        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta,
                         "rules": VIEWER_RULES})  # fmt: skip
    await client.ensure(f"{RBAC}/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": VIEWER},
        "subjects": [{"kind": "ServiceAccount", "name": VIEWER, "namespace": VIEWER_NAMESPACE}],
    })  # fmt: skip
    answer = await client.create(
        f"/api/v1/namespaces/{VIEWER_NAMESPACE}/serviceaccounts/{VIEWER}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 86400}},
    )
    return str(answer["status"]["token"])


def _with_client(kubeconfig: Path, work: Any, alive: Callable[[], None]) -> Any:
    """``work(client)`` on the demo's cluster, errors as one line (``views.call``); when the cluster or the
    operator died under it, ``alive`` names that instead."""
    try:
        return views.call(connection.load(kubeconfig), work)
    except UserError:
        alive()
        raise


def _wait_ready(port: int, alive: Callable[[], None], log_path: Path) -> None:
    """Until the operator answers ``/readyz`` (it has synced), so that the scenario's timings are its own."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise UserError(f"the operator was not ready within 120 s; see {log_path}")


def demo(
    profile: Annotated[str, typer.Option(help="Cluster profile to start.")] = "demo",
    play: Annotated[
        bool, typer.Option("--scenario/--no-scenario", help="Play the scenario, or only apply the examples.")
    ] = True,
    http_port: Annotated[int | None, typer.Option(help="Operator HTTP port (default: a free one).")] = None,
    exit_after: Annotated[
        float | None,
        typer.Option(help="Stop by itself this many seconds after the scenario (for scripted runs)."),
    ] = None,
) -> None:
    """Start the site in small and the operator, apply the examples, play the scenario, run until Ctrl-C."""
    examples = _examples_dir()
    if http_port is not None:
        cluster.ensure_port_free(http_port, "--http-port")
    if play and profile != scenario.PROFILE:
        console.print(f"The scenario is written for the {scenario.PROFILE} profile; on {profile} only the examples "
                      "are applied.")  # fmt: skip
        play = False
    dev_cluster.stop_on_ctrl_c_and_sigterm()
    local = dev_cluster.start("demo", profile, port=None, apiserver_args=[], detached=False)
    operator: subprocess.Popen[bytes] | None = None
    try:
        port = http_port or cluster.free_port()  # chosen once the cluster's own ports are taken
        log_path = local.directory / "logs" / "operator.log"

        def alive() -> None:
            local.check_alive()
            if operator is not None and operator.poll() is not None:
                raise UserError(f"the operator exited with code {operator.returncode}; see {log_path}")

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
        _wait_ready(port, alive, log_path)
        kubectl = binaries.locate("kubectl")
        files = sorted(examples.glob("*.yaml"))
        if play:  # the scenario's first step submits SOOFI's pretraining itself
            files = [f for f in files if f.name != scenario.PRETRAINING]
        applied = subprocess.run(
            [str(kubectl), "--kubeconfig", str(local.kubeconfig), "apply", *(f"--filename={f}" for f in files)],
            capture_output=True,
            text=True,
            check=False,
        )
        if applied.returncode != 0:
            raise UserError(f"applying {examples} failed: {applied.stderr.strip()}")
        for line in applied.stdout.splitlines():
            console.print(f"  {line}", markup=False)
        token = _with_client(local.kubeconfig, viewer_token, alive)
        beside = Path(sys.executable).parent / "leitstand"  # the entry point of this installation
        leitstand = str(beside) if beside.exists() else f"{sys.executable} -m leitstand"
        console.print()
        console.print(f"[bold]Cluster map[/] (read-only, as {VIEWER_NAMESPACE}/{VIEWER}):")
        console.print(f"  http://127.0.0.1:{port}/ui#token={token}")
        console.print(f"  {leitstand} top --kubeconfig {local.kubeconfig}")
        console.print()
        if play:
            console.print(
                f"The scenario (commands as after `export KUBECONFIG={local.kubeconfig}`; kubectl is {kubectl}):"
            )

            async def story(client: Client) -> None:
                await scenario.Scenario(client, console, examples / scenario.PRETRAINING, alive, log_path).run()

            _with_client(local.kubeconfig, story, alive)
            console.print()
        console.print("[bold]Leitstand demo is running.[/] Look at it with:")
        console.print(f"  {kubectl} --kubeconfig {local.kubeconfig} get pods -A -o wide")
        console.print(f"  {leitstand} queues --kubeconfig {local.kubeconfig}")
        console.print(f"  metrics: http://127.0.0.1:{port}/metrics")
        console.print(f"  operator log: {log_path}")
        console.print("Press Ctrl-C to stop everything.")
        started = time.monotonic()
        while exit_after is None or time.monotonic() - started < exit_after:
            alive()
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
