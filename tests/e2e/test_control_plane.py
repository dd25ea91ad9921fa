"""The local control plane is real: RBAC-enforcing kube-apiserver, etcd, kwok GPU nodes."""

import uuid
from pathlib import Path
from typing import Any

import pytest

from leitstand.devcluster import cluster
from leitstand.kube import connection
from leitstand.kube.client import ApiError, Client
from tests.e2e.waiting import until


def a_pod(name: str, *, gpus: int, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "schedulerName": "leitstand",
            "containers": [
                {
                    "name": "train",
                    "image": "nvcr.io/nvidia/pytorch:25.10-py3",
                    "resources": {
                        "requests": {"nvidia.com/gpu": str(gpus)},
                        "limits": {"nvidia.com/gpu": str(gpus)},
                    },
                }
            ],
        },
    }


async def test_a_pod_bound_through_the_binding_subresource_runs_then_succeeds(
    admin: Client,
) -> None:
    name = f"bind-{uuid.uuid4().hex[:6]}"
    created = await admin.create(
        "/api/v1/namespaces/default/pods",
        a_pod(name, gpus=8, annotations={"leitstand.dev/sim-duration": "2s"}),
    )
    assert created["status"]["phase"] == "Pending"
    assert "nodeName" not in created["spec"]

    await admin.bind("default", name, "b200-0003", uid=created["metadata"]["uid"])

    async def phase(expected: str) -> dict[str, Any] | None:
        pod = await admin.get(f"/api/v1/namespaces/default/pods/{name}")
        return pod if pod["status"].get("phase") == expected else None

    running = await until(lambda: phase("Running"), what=f"pod {name} Running", within=20)
    assert running["spec"]["nodeName"] == "b200-0003"
    assert running["status"]["containerStatuses"][0]["state"]["running"]
    done = await until(lambda: phase("Succeeded"), what=f"pod {name} Succeeded", within=30)
    assert done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


async def test_a_pod_bound_twice_is_refused_by_the_api_server(admin: Client) -> None:
    name = f"twice-{uuid.uuid4().hex[:6]}"
    await admin.create("/api/v1/namespaces/default/pods", a_pod(name, gpus=1, annotations={}))
    await admin.bind("default", name, "b200-0004")
    with pytest.raises(ApiError) as refused:
        await admin.bind("default", name, "b200-0005")
    assert refused.value.status == 409


async def test_a_pod_annotated_to_fail_ends_failed(admin: Client) -> None:
    name = f"fail-{uuid.uuid4().hex[:6]}"
    await admin.create(
        "/api/v1/namespaces/default/pods",
        a_pod(name, gpus=1, annotations={"leitstand.dev/sim-fail-after": "1s"}),
    )
    await admin.bind("default", name, "b200-0006")

    async def failed() -> dict[str, Any] | None:
        pod = await admin.get(f"/api/v1/namespaces/default/pods/{name}")
        return pod if pod["status"].get("phase") == "Failed" else None

    pod = await until(failed, what=f"pod {name} Failed", within=30)
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


async def test_the_dev_profile_nodes_look_like_gpu_operator_nodes(admin: Client) -> None:
    nodes = (await admin.list("/api/v1/nodes", label_selector="nvidia.com/gpu.product"))["items"]
    by_product: dict[str, int] = {}
    for node in nodes:
        labels = node["metadata"]["labels"]
        by_product[labels["nvidia.com/gpu.product"]] = by_product.get(labels["nvidia.com/gpu.product"], 0) + 1
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert labels["nvidia.com/gpu.count"] == "8"
        assert int(labels["nvidia.com/gpu.memory"]) > 90_000
        assert labels["network.topology.nvidia.com/spine"]
        assert labels["network.topology.nvidia.com/leaf"]
        assert labels["kubernetes.io/hostname"] == node["metadata"]["name"]
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
    assert by_product == {"NVIDIA-B200": 8, "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition": 2}
    leaves = {
        n["metadata"]["labels"]["network.topology.nvidia.com/leaf"] for n in nodes if "b200" in n["metadata"]["name"]
    }
    assert leaves == {"b200-su-01", "b200-su-02"}


async def test_rbac_is_enforced_for_a_user_without_roles(
    control_plane: cluster.LocalCluster,
) -> None:
    path: Path = control_plane.user_kubeconfig("nobody", ("tenants",))
    async with Client(connection.load(path)) as stranger:
        with pytest.raises(ApiError) as forbidden:
            await stranger.list("/api/v1/namespaces/default/pods")
    assert forbidden.value.status == 403
    assert 'User "nobody" cannot list resource "pods"' in forbidden.value.message
