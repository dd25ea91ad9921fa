"""Bad input and tenants: generated manifests against the real API server, and the operator unshaken.

Hypothesis writes TrainingJob and GPUQuota manifests from the CRDs' own schemas (``make
test`` runs 1,000 cases; the ``soak`` profile ten times as many). The API server rejects
what is invalid (server-side dry run, so nothing is stored); whatever it accepts the
Python models accept too, so the operator can always read it. A sample of accepted jobs
is then created for real next to another tenant's running job: the operator never
crashes, every job gets a clear reason, and the other tenant is untouched.
"""

import functools
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leitstand import locations
from leitstand.devcluster import cluster
from leitstand.kube import connection, resources
from leitstand.kube.client import Client
from tests.e2e.clusters import own_cluster
from tests.e2e.manifests import manifests
from tests.e2e.operators import Operator
from tests.e2e.test_operator import GROUP, clean, job, namespace, quota
from tests.e2e.waiting import until

CRDS = Path(locations.PACKAGE_DIR).parent.parent / "crds"
CASES = int(os.environ.get("LEITSTAND_FUZZ_CASES", "500"))  # per kind: 1,000 in all by default
FUZZ = settings(
    max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)


@functools.cache
def crd(name: str) -> dict[str, Any]:
    """The CRD (parsed once: the TrainingJob's, with core/v1's pod template schema, is 200 KB of YAML)."""
    loaded: dict[str, Any] = yaml.safe_load((CRDS / f"{name}.leitstand.dev.yaml").read_text())
    return loaded


@functools.cache
def job_manifests() -> st.SearchStrategy[dict[str, Any]]:
    return manifests("TrainingJob", crd("trainingjobs"))


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    yield from own_cluster(tmp_path_factory, "fuzz")


@pytest.fixture(scope="module")
def http(dev: cluster.LocalCluster) -> Iterator[httpx.Client]:
    verify = connection.load(dev.kubeconfig).ssl_context()
    with httpx.Client(base_url=dev.server, verify=verify, timeout=30) as client:
        client.post(
            "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t-fuzz"}}
        )
        yield client


def dry_run(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, params={"dryRun": "All", "fieldValidation": "Strict"}, content=json.dumps(body, default=str))


def check(answer: httpx.Response, model: type[pydantic.BaseModel]) -> None:
    if answer.status_code < 300:
        model.model_validate(answer.json()["spec"])  # the operator can read whatever the API server accepts
    else:
        assert answer.status_code in (400, 422), answer.text
        assert answer.json()["message"], answer.text


@pytest.mark.parametrize(
    ("kind", "plural", "path", "model"),
    [
        ("TrainingJob", "trainingjobs", f"{GROUP}/namespaces/t-fuzz/trainingjobs", resources.TrainingJobSpec),
        ("GPUQuota", "gpuquotas", f"{GROUP}/gpuquotas", resources.GPUQuotaSpec),
    ],
)
def test_generated_manifests_are_rejected_or_readable(
    http: httpx.Client, kind: str, plural: str, path: str, model: type[pydantic.BaseModel]
) -> None:
    seen = {"accepted": 0, "rejected": 0}

    @FUZZ
    @given(manifests(kind, crd(plural)))
    def case(body: dict[str, Any]) -> None:
        answer = dry_run(http, path, body)
        check(answer, model)
        seen["accepted" if answer.status_code < 300 else "rejected"] += 1

    case()
    assert seen["accepted"] > CASES // 20, seen  # both sides of the rules were exercised
    assert seen["rejected"] > CASES // 20, seen


@st.composite
def small_jobs(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(job_manifests())
    spec = body["spec"]
    if isinstance(spec, dict) and isinstance(spec.get("replicas"), int):
        spec["replicas"] = max(1, min(spec["replicas"], 16))  # bounded pods for the real run
    body["metadata"]["name"] = f"f{uuid.uuid4().hex[:10]}"
    return body


async def test_accepted_but_unschedulable_jobs_get_a_reason_and_leave_other_tenants_alone(
    dev: cluster.LocalCluster, http: httpx.Client, tmp_path: Path
) -> None:
    accepted: list[dict[str, Any]] = []

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    @given(small_jobs())
    def collect(body: dict[str, Any]) -> None:
        if len(accepted) < 30 and dry_run(http, f"{GROUP}/namespaces/t-fuzz/trainingjobs", body).status_code < 300:
            accepted.append(body)

    collect()
    assert len(accepted) >= 20
    async with Client(connection.load(dev.kubeconfig)) as api:
        await quota(api, "root", parent=None)
        await quota(api, "t-other", guaranteed=16)
        await quota(api, "t-fuzz-q", guaranteed=8, namespaces=["t-fuzz"])
        await namespace(api, "t-fuzz")
        await job(api, "t-other", "steady", 2)
        operator = Operator(dev.kubeconfig, tmp_path / "operator.log")
        try:
            operator.wait_ready()

            async def steady_running() -> list[str] | None:
                body = await api.get(f"{GROUP}/namespaces/t-other/trainingjobs/steady")
                if (body.get("status") or {}).get("phase") != "Running":
                    return None
                pods = (await api.list("/api/v1/namespaces/t-other/pods"))["items"]
                return sorted(p["metadata"]["uid"] for p in pods)

            before = await until(steady_running, what="the other tenant's job Running", within=60)
            for body in accepted:
                await api.create(f"{GROUP}/namespaces/t-fuzz/trainingjobs", body)

            async def all_explained() -> dict[str, str] | None:
                items = (await api.list(f"{GROUP}/namespaces/t-fuzz/trainingjobs"))["items"]
                reasons = {i["metadata"]["name"]: (i.get("status") or {}).get("reason") or "" for i in items}
                return reasons if len(reasons) == len(accepted) and all(reasons.values()) else None

            reasons = await until(all_explained, what="a reason on every generated job", within=120)
            assert set(reasons.values()) <= {
                "Running", "Scheduled", "Pending", "Completed", "InsufficientCapacity", "TopologyUnsatisfiable",
                "QuotaExhausted", "OverLimit", "NoMatchingNodes", "Unschedulable", "WaitingForReclaim", "WaitingForOlderJob",
                "Reclaimed", "Preempted", "ReturnedLentCapacity", "Restarting", "RuntimeLimitExceeded",
            }, reasons  # fmt: skip
            assert operator.process.poll() is None, "the operator crashed"
            assert await steady_running() == before, "another tenant's job was disturbed"
            log = (tmp_path / "operator.log").read_text()
            assert "Traceback" not in log, log[-3000:]
        finally:
            operator.stop()
            await clean(api)
