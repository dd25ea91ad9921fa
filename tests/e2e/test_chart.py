"""The Helm chart: lint-clean, accepted by the API server, installable, and least privilege proven.

helm is the one built by hack/; the API server enforces RBAC. The operator then runs
under the chart's ServiceAccount (a token from TokenRequest) through a scheduling
scenario, and the same identity is refused what it must not do.
"""

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from leitstand import locations
from leitstand.devcluster import binaries, cluster
from leitstand.kube import connection
from leitstand.kube.client import ApiError, Client
from tests.e2e.clusters import own_cluster
from tests.e2e.operators import Operator
from tests.e2e.test_operator import GROUP, job, quota
from tests.e2e.waiting import until

ROOT = Path(locations.PACKAGE_DIR).parent.parent
CHART = ROOT / "helm" / "leitstand"
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
NAMESPACE = "leitstand-system"

# The Prometheus Operator's CRDs are not vendored here: these stand-ins (same group, version
# and kinds, schema left open) let the API server accept the chart's ServiceMonitor and
# PrometheusRule in a dry run. Their content is checked by promtool elsewhere.
MONITORING_STAND_INS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules"))
]


def run(*argv: str, stdin: str | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{' '.join(argv[:3])}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def helm() -> Path:
    for name in binaries.missing(["helm"]):
        binaries.build(name, log=Path("/tmp") / "leitstand-helm-build.log")
    return binaries.locate("helm")


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    """A dev-profile cluster without Leitstand's CRDs: the chart brings them."""
    yield from own_cluster(tmp_path_factory, "chart", install_crds=False)


def test_helm_lint_is_clean_for_the_defaults_and_every_feature(helm: Path) -> None:
    run(str(helm), "lint", "--strict", str(CHART))
    run(str(helm), "lint", "--strict", str(CHART), "-f", str(ALL_FEATURES))


def test_a_typo_in_the_values_is_refused(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "template", "t", str(CHART), "--set", "replicaCunt=3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "additional properties 'replicaCunt' not allowed" in result.stderr


def test_the_plain_manifests_and_the_charts_files_are_in_step(helm: Path) -> None:
    rendered = run(str(helm), "template", "leitstand", str(CHART), "--namespace", NAMESPACE)
    assert rendered == (ROOT / "deploy/manifests/leitstand.yaml").read_text(), "run `make generate`"
    for source, copy in (("crds", "files/crds"), ("deploy/grafana", "files/grafana")):
        for path in (ROOT / source).iterdir():
            assert (CHART / copy / path.name).read_text() == path.read_text(), "run `make generate`"
    assert (CHART / "files/prometheus/rules.yaml").read_text() == (ROOT / "deploy/prometheus/rules.yaml").read_text()


def test_the_rendered_chart_is_accepted_by_the_api_server(helm: Path, bare: cluster.LocalCluster) -> None:
    kubectl = [str(binaries.locate("kubectl")), "--kubeconfig", str(bare.kubeconfig)]
    run(*kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all(MONITORING_STAND_INS))
    run(*kubectl, "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com", "--timeout=30s")
    default = run(str(helm), "template", "leitstand", str(CHART), "--namespace", NAMESPACE)
    every = run(str(helm), "template", "leitstand", str(CHART), "--namespace", NAMESPACE, "-f", str(ALL_FEATURES),
                "--api-versions", "monitoring.coreos.com/v1")  # fmt: skip
    kinds = {doc["kind"] for doc in yaml.safe_load_all(every) if doc}
    assert {"ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"} <= kinds
    for rendered in (default, every):
        applied = run(*kubectl, "apply", "--dry-run=server", "-f", "-", stdin=rendered)
        assert "deployment.apps/leitstand created (server dry run)" in applied


@pytest.fixture(scope="module")
def installed(helm: Path, bare: cluster.LocalCluster) -> cluster.LocalCluster:
    run(str(helm), "--kubeconfig", str(bare.kubeconfig), "install", "leitstand", str(CHART), "--namespace", NAMESPACE)
    return bare


async def service_account_token(admin: Client) -> str:
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    answer = await admin.create(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/leitstand/token", request)
    token: str = answer["status"]["token"]
    return token


@pytest.fixture
async def as_operator(installed: cluster.LocalCluster, tmp_path: Path) -> AsyncIterator[tuple[Path, Client, Client]]:
    """A kubeconfig and a client with the chart's ServiceAccount identity, and an admin client."""
    async with Client(connection.load(installed.kubeconfig)) as admin:
        token = await service_account_token(admin)
        path = tmp_path / "kubeconfig-operator"
        ca = connection.load(installed.kubeconfig).ca_pem
        assert ca is not None
        connection.write(path, server=installed.server, ca_pem=ca, user="leitstand", token=token)
        async with Client(connection.load(path)) as operator_client:
            yield path, operator_client, admin


async def test_the_operator_schedules_under_the_charts_service_account(
    as_operator: tuple[Path, Client, Client], tmp_path: Path
) -> None:
    path, _operator_client, admin = as_operator
    env = {"LEITSTAND_LEASE_NAMESPACE": NAMESPACE, "LEITSTAND_LEASE_NAME": "leitstand"}
    operator = Operator(path, tmp_path / "operator.log", env=env)
    try:
        operator.wait_ready()
        await quota(admin, "root", parent=None)
        await quota(admin, "t-chart", guaranteed=16)
        await job(admin, "t-chart", "pair", 2)

        async def running() -> dict[str, Any] | None:
            body = await admin.get(f"{GROUP}/namespaces/t-chart/trainingjobs/pair")
            return body if (body.get("status") or {}).get("phase") == "Running" else None

        await until(running, what="the job Running under the chart's identity", within=60)

        async def quota_status() -> dict[str, Any] | None:
            body = await admin.get(f"{GROUP}/gpuquotas/t-chart")
            return body if (body.get("status") or {}).get("gpus", {}).get("b200", {}).get("allocated") == 16 else None

        await until(quota_status, what="the GPUQuota status written", within=30)
        log = (tmp_path / "operator.log").read_text()
        assert "Forbidden" not in log, log[-2000:]
        assert " 403 " not in log, log[-2000:]
    finally:
        operator.stop()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets", None),
        ("GET", "/api/v1/secrets", None),
        ("DELETE", "/api/v1/nodes/b200-0001", None),
        ("PATCH", f"{GROUP}/gpuquotas/root", {"spec": {"gpus": {"b200": {"guaranteed": 1}}}}),
        ("DELETE", f"{GROUP}/gpuquotas/root", None),
        ("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/someone-else", {}),
        # the owners of pod groups are read, never written
        ("DELETE", "/apis/batch/v1/namespaces/default/jobs/someone", None),
        ("POST", "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs", {"metadata": {"name": "x"}}),
        ("PATCH", "/apis/jobset.x-k8s.io/v1alpha2/namespaces/default/jobsets/someone", {"spec": {}}),
        ("DELETE", "/apis/scheduling.k8s.io/v1alpha2/namespaces/default/podgroups/someone", None),
    ],
    ids=[
        "read-secrets",
        "list-all-secrets",
        "delete-node",
        "edit-gpuquota",
        "delete-gpuquota",
        "steal-another-lease",
        "delete-a-job",
        "create-a-pytorchjob",
        "edit-a-jobset",
        "delete-a-podgroup",
    ],
)
async def test_the_charts_service_account_is_refused_what_it_must_not_do(
    as_operator: tuple[Path, Client, Client], method: str, path: str, body: dict[str, Any] | None
) -> None:
    _path, operator_client, admin = as_operator
    existing = (await admin.list(f"{GROUP}/gpuquotas"))["items"]
    if not any(q["metadata"]["name"] == "root" for q in existing):
        await admin.create(f"{GROUP}/gpuquotas", {"apiVersion": "leitstand.dev/v1alpha1", "kind": "GPUQuota",
                                                   "metadata": {"name": "root"}, "spec": {}})  # fmt: skip
    content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
    with pytest.raises(ApiError) as refused:
        await operator_client.request(method, path, body=body, content_type=content_type)
    assert refused.value.status == 403
