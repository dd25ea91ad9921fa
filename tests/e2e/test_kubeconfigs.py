"""Connecting the way kubectl connects, against the real API server: exec plugins, merged files, contexts, --as.

The exec plugin is a small script that hands out a real ServiceAccount token in
an ``ExecCredential`` that says it expires a few seconds later, and counts its runs.
"""

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from leitstand.devcluster import cluster
from leitstand.kube.client import ApiError, Client
from tests import templates
from tests.e2e.operators import Operator, account
from tests.e2e.waiting import until

GROUP = "/apis/leitstand.dev/v1alpha1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
PLUGIN = """\
import datetime, json, os, pathlib, sys
here = pathlib.Path(__file__).parent
calls = here / "calls"
run = int(calls.read_text()) + 1 if calls.exists() else 1
calls.write_text(str(run))
mode = os.environ["PLUGIN_MODE"]
if mode == "fail":
    print("login.example.org: connection refused", file=sys.stderr)
    print("run `kubelogin get-token` again", file=sys.stderr)
    sys.exit(3)
token = (here / "token").read_text().strip()
if mode == "refused" or (mode == "first-refused" and run == 1):
    token = "a-revoked-token"
expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=float(os.environ["PLUGIN_SECONDS"]))
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential",
                  "status": {"token": token, "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
"""


def leitstand(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leitstand", *args], capture_output=True, text=True, timeout=60, check=False,
        env={**{k: v for k, v in os.environ.items() if k != "KUBECONFIG"}, **(env or {})},
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def names(text: str) -> set[str]:
    """The NAME column of a ``leitstand jobs`` table (empty for "No resources found.")."""
    header, *rows = text.strip().splitlines()
    if "NAME" not in header.split():
        return set()
    column = header.split().index("NAME")
    return {row.split()[column] for row in rows}


def cluster_entry(local: cluster.LocalCluster) -> dict[str, Any]:
    document = yaml.safe_load(Path(local.kubeconfig).read_text())
    entry: dict[str, Any] = document["clusters"][0]
    return entry


class Plugin:
    """The plugin's directory: its script, the token it hands out and the count of its runs."""

    def __init__(self, directory: Path, token: str) -> None:
        self.directory = directory
        (directory / "token").write_text(token)
        self.token = token
        self.script = directory / "plugin.py"
        self.script.write_text(f"#!{sys.executable}\n{PLUGIN}")
        self.script.chmod(self.script.stat().st_mode | stat.S_IXUSR)

    @property
    def runs(self) -> int:
        calls = self.directory / "calls"
        return int(calls.read_text()) if calls.exists() else 0

    def kubeconfig(self, local: cluster.LocalCluster, *, mode: str = "good", seconds: float = 3) -> Path:
        path = self.directory / f"kubeconfig-{mode}"
        entry = cluster_entry(local)
        user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(self.script),
                         "interactiveMode": "Never", "env": [{"name": "PLUGIN_MODE", "value": mode},
                                                             {"name": "PLUGIN_SECONDS", "value": str(seconds)}]}}  # fmt: skip
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": [entry], "current-context": "sso",
            "users": [{"name": "sso-user", "user": user}],
            "contexts": [{"name": "sso", "context": {"cluster": entry["name"], "user": "sso-user"}}],
        }))  # fmt: skip
        return path


async def namespace(admin: Client, name: str) -> None:
    await admin.ensure("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def training_job(admin: Client, ns: str, name: str, replicas: int = 1) -> None:
    await admin.create(f"{GROUP}/namespaces/{ns}/trainingjobs", {
        "apiVersion": "leitstand.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name},
        "spec": {"replicas": replicas, "gpusPerReplica": 8, "gpuType": "b200",
                 "template": templates.pod()},
    })  # fmt: skip


async def gpu_quota(admin: Client, name: str, parent: str | None = None, namespaces: tuple[str, ...] = ()) -> None:
    spec: dict[str, Any] = {"gpus": {"b200": {"guaranteed": 8 if parent else 16}}}
    if parent:
        spec |= {"parent": parent, "namespaces": list(namespaces)}
    await admin.create(f"{GROUP}/gpuquotas", {"apiVersion": "leitstand.dev/v1alpha1", "kind": "GPUQuota",
                                              "metadata": {"name": name}, "spec": spec})  # fmt: skip


async def remove(admin: Client, paths: list[str]) -> None:
    for path in paths:
        try:
            if "/trainingjobs/" in path:
                await admin.patch(path, {"metadata": {"finalizers": None}})
            await admin.delete(path)
        except ApiError as error:
            if error.status != 404:
                raise


@pytest.fixture
async def plugin(admin: Client, tmp_path: Path) -> AsyncIterator[Plugin]:
    """A plugin handing out the token of a fresh ServiceAccount that may do anything (the operator needs much)."""
    name = f"sso-{uuid.uuid4().hex[:6]}"
    token = await account(admin, "default", name, [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
                          cluster_wide=True)  # fmt: skip
    yield Plugin(tmp_path, token)
    await remove(admin, [f"/api/v1/namespaces/default/serviceaccounts/{name}", f"{RBAC}/clusterroles/default-{name}",
                         f"{RBAC}/clusterrolebindings/default-{name}"])  # fmt: skip


async def test_an_exec_plugin_user_runs_the_cli_and_the_operator_with_credentials_refreshed_in_place(
    admin: Client, control_plane: cluster.LocalCluster, plugin: Plugin, tmp_path: Path
) -> None:
    await gpu_quota(admin, "kc-sso")
    await gpu_quota(admin, "kc-sso-team", parent="kc-sso", namespaces=("kc-sso-team",))
    await namespace(admin, "kc-sso-team")
    await training_job(admin, "kc-sso-team", "kc-finetune")
    cleanup = [f"{GROUP}/namespaces/kc-sso-team/trainingjobs/kc-finetune", f"{GROUP}/gpuquotas/kc-sso-team",
               f"{GROUP}/gpuquotas/kc-sso"]  # fmt: skip
    try:
        kubeconfig = plugin.kubeconfig(control_plane, seconds=3)
        queues = ok(leitstand("queues", "--kubeconfig", str(kubeconfig)))
        assert {"kc-sso", "kc-sso-team"} <= {line.split()[0] for line in queues.splitlines()[1:]}
        assert plugin.runs == 1
        listed = ok(leitstand("jobs", "-A", env={"KUBECONFIG": str(kubeconfig)}))
        assert "kc-finetune" in names(listed)
        assert plugin.runs == 2  # one run per process: its credential lasts the three seconds

        operator = Operator(kubeconfig, tmp_path / "operator.log")
        try:
            operator.wait_ready()

            async def running() -> bool | None:
                body = await admin.get(f"{GROUP}/namespaces/kc-sso-team/trainingjobs/kc-finetune")
                return True if (body.get("status") or {}).get("phase") == "Running" else None

            await until(running, what="the operator (exec credentials) to start kc-finetune", within=60)
            started = plugin.runs
            await training_job(admin, "kc-sso-team", "kc-after-expiry")
            cleanup.insert(0, f"{GROUP}/namespaces/kc-sso-team/trainingjobs/kc-after-expiry")

            async def later_running() -> bool | None:
                body = await admin.get(f"{GROUP}/namespaces/kc-sso-team/trainingjobs/kc-after-expiry")
                expired = plugin.runs > started  # a credential expired, and the plugin ran again in place
                return True if expired and (body.get("status") or {}).get("phase") == "Running" else None

            await until(later_running, what="a job started after the first credential expired", within=60)
            assert operator.process.poll() is None, "the operator was restarted"
            snapshot = tmp_path / "snapshot.json"
            assert "no snapshot" not in await operator.snapshot(admin, snapshot)
            events = await admin.list("/api/v1/namespaces/kc-sso-team/events")
        finally:
            operator.stop()
        for text in (operator.log.read_text(), snapshot.read_text(), json.dumps(events)):
            assert plugin.token not in text  # logs, snapshots and Events never carry the credential
    finally:
        await remove(admin, cleanup)


async def test_a_refused_credential_is_loaded_again_once_then_reported_and_a_failing_plugin_is_one_line(
    control_plane: cluster.LocalCluster, plugin: Plugin
) -> None:
    first_refused = plugin.kubeconfig(control_plane, mode="first-refused", seconds=600)
    ok(leitstand("queues", "--kubeconfig", str(first_refused)))
    assert plugin.runs == 2  # the revoked token got a 401; the plugin ran again and the retry passed

    refused = plugin.kubeconfig(control_plane, mode="refused", seconds=600)
    line = one_line_error(leitstand("queues", "--kubeconfig", str(refused)))
    assert line == (
        "error: the API server did not accept the credentials of user 'sso-user', not even freshly loaded ones: "
        "401 Unauthorized; log in again (or check the kubeconfig's user)"
    )
    assert plugin.runs == 4  # loaded once more after the 401, not in a loop

    failing = plugin.kubeconfig(control_plane, mode="fail")
    line = one_line_error(leitstand("jobs", "-A", "--kubeconfig", str(failing)))
    assert line == (
        f"error: exec plugin '{plugin.script}' of user 'sso-user' failed: process returned 3. "
        "login.example.org: connection refused run `kubelogin get-token` again"
    )


async def test_merged_kubeconfigs_a_chosen_context_its_namespace_and_impersonation_as_rbac_says(
    admin: Client, control_plane: cluster.LocalCluster, tmp_path: Path
) -> None:
    for ns in ("kc-team-a", "kc-team-b"):
        await namespace(admin, ns)
        await training_job(admin, ns, f"job-in-{ns}")
    reader = {"apiGroups": ["leitstand.dev"], "resources": ["trainingjobs"], "verbs": ["get", "list"]}
    await admin.ensure(f"{RBAC}/clusterroles", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                                 "metadata": {"name": "kc-job-reader"}, "rules": [reader]})  # fmt: skip
    for ns, subject in (("kc-team-a", {"kind": "User", "name": "kc-alice"}),
                        ("kc-team-b", {"kind": "Group", "name": "kc-auditors"})):  # fmt: skip
        await admin.ensure(f"{RBAC}/namespaces/{ns}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "kc-readers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kc-job-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject}],
        })  # fmt: skip
    try:
        # the second file: alice's own certificate, in a context whose namespace is her team's
        alice = yaml.safe_load(control_plane.user_kubeconfig("kc-alice").read_text())
        alice["users"][0]["name"] = "alice"
        alice["contexts"] = [{"name": "team-a", "context": {"cluster": alice["clusters"][0]["name"], "user": "alice",
                                                            "namespace": "kc-team-a"}}]  # fmt: skip
        alice["current-context"] = "team-a"
        second = tmp_path / "alice"
        second.write_text(yaml.safe_dump(alice))
        both = {"KUBECONFIG": f"{control_plane.kubeconfig}{os.pathsep}{second}"}

        assert names(ok(leitstand("jobs", "--context", "team-a", env=both))) == {"job-in-kc-team-a"}
        # she may read her jobs but not Events or pods: explain says what it cannot show, or why it cannot
        explained = json.loads(ok(leitstand("explain", "job-in-kc-team-a", "--context", "team-a", "-o", "json",
                                            env=both)))  # fmt: skip
        assert explained[0]["events"] == ["(you may not list Events in namespace kc-team-a)"]
        no_pods = one_line_error(leitstand("explain", "job/sweep", "--context", "team-a", env=both))
        assert no_pods.startswith("error: you may not list pods in namespace kc-team-a, which explaining a Job needs")
        refused = one_line_error(leitstand("jobs", "--context", "team-a", "-n", "kc-team-b", env=both))
        assert 'User "kc-alice" cannot list resource "trainingjobs"' in refused
        assert refused.startswith("error: the API server refused: 403 Forbidden")

        # the first file's current context (the admin) impersonating, as RBAC allows
        assert names(ok(leitstand("jobs", "--as", "kc-alice", "-n", "kc-team-a", env=both))) == {"job-in-kc-team-a"}
        as_alice = one_line_error(leitstand("jobs", "--as", "kc-alice", "-n", "kc-team-b", env=both))
        assert 'User "kc-alice" cannot list resource "trainingjobs"' in as_alice
        auditor = ["--as", "kc-carol", "--as-group", "kc-auditors", "--as-group", "system:authenticated"]
        assert names(ok(leitstand("jobs", *auditor, "-n", "kc-team-b", env=both))) == {"job-in-kc-team-b"}

        # alice may not impersonate anyone: the API server says so, in one line
        escalate = one_line_error(leitstand("jobs", "--context", "team-a", "--as", "kc-bob", env=both))
        assert 'User "kc-alice" cannot impersonate' in escalate  # 1.36 names the constrained verb too
    finally:
        await remove(admin, [f"{GROUP}/namespaces/{ns}/trainingjobs/job-in-{ns}" for ns in ("kc-team-a", "kc-team-b")])
