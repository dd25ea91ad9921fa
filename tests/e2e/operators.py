"""Running the real operator (``leitstand run``) as a subprocess in e2e tests."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from leitstand.devcluster import cluster
from leitstand.kube.client import Client


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

    async def snapshot(self, admin: Client, path: Path) -> str:
        """Saves the operator's last snapshot to ``path`` (for ``leitstand replay``); says where, or why not."""
        rules = [{"apiGroups": ["leitstand.dev"], "resources": ["gpuquotas", "trainingjobs"], "verbs": ["get", "list"]}]
        try:
            token = await account(admin, "default", f"debug-{uuid.uuid4().hex[:8]}", rules, cluster_wide=True)
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.get(
                    f"http://127.0.0.1:{self.port}/api/v1/snapshot", headers={"Authorization": f"Bearer {token}"}
                )
            answer.raise_for_status()
        except Exception as error:  # a diagnostic: it must never hide the failure it explains
            return f"(no snapshot: {error!r})"
        await asyncio.to_thread(path.write_text, json.dumps(answer.json(), indent=1))
        return f"the operator's last snapshot: {path}"


async def account(
    admin: Client, namespace: str, name: str, rules: list[dict[str, Any]], *, cluster_wide: bool = False
) -> str:
    """A ServiceAccount with exactly ``rules`` (in its namespace, or cluster-wide), and a token for it."""
    await admin.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
    )
    kind, scope = ("ClusterRole", "") if cluster_wide else ("Role", f"/namespaces/{namespace}")
    await admin.create(f"/apis/rbac.authorization.k8s.io/v1{scope}/{kind.lower()}s",
                       {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": f"{namespace}-{name}"}, "rules": rules})  # fmt: skip
    await admin.create(f"/apis/rbac.authorization.k8s.io/v1{scope}/{kind.lower()}bindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": f"{kind}Binding", "metadata": {"name": f"{namespace}-{name}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": f"{namespace}-{name}"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    })  # fmt: skip
    answer = await admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})  # fmt: skip
    token: str = answer["status"]["token"]
    return token
