"""Cluster profiles: named fleets of fake GPU nodes, as a real GPU operator labels them.

A profile (``deploy/profiles/<name>.yaml``) lists system types (GPU product,
GPU count and memory, CPU, memory) and pools of systems cut into leaf groups
and spines. ``nodes`` turns it into Node objects with what NVIDIA GPU Feature
Discovery and Topograph would set: ``nvidia.com/gpu.*`` labels, allocatable
``nvidia.com/gpu``, and the spine / leaf topology labels. Pure: reads only the
profile file it is given.
"""

from pathlib import Path
from typing import Any

import pydantic

from leitstand import locations
from leitstand.errors import UserError, read_yaml

GPU_RESOURCE = "nvidia.com/gpu"
SPINE_LABEL = "network.topology.nvidia.com/spine"
LEAF_LABEL = "network.topology.nvidia.com/leaf"
HOSTNAME_LABEL = "kubernetes.io/hostname"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SystemType(_Strict):
    """One kind of server: what a node of this type offers."""

    gpu_product: str = pydantic.Field(alias="gpuProduct")
    gpus: int = pydantic.Field(ge=0, le=64)
    gpu_memory_mib: int = pydantic.Field(alias="gpuMemoryMiB", ge=0)
    gpu_family: str = pydantic.Field(alias="gpuFamily")
    machine: str
    cpu: str
    memory: str
    pods: int = 110
    # other allocatable device resources: the RDMA devices of a DGX B200's NICs, say
    devices: dict[str, str] = pydantic.Field(default_factory=dict)


class Pool(_Strict):
    """``count`` systems of one type, named ``<prefix>-NNNN``, in leaf groups and spines."""

    system: str
    count: int = pydantic.Field(ge=1, le=20_000)
    prefix: str = pydantic.Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    leaf_size: int = pydantic.Field(alias="leafSize", ge=1)
    leaves_per_spine: int = pydantic.Field(alias="leavesPerSpine", ge=1)
    labels: dict[str, str] = pydantic.Field(default_factory=dict)


class Profile(_Strict):
    name: str
    description: str
    systems: dict[str, SystemType]
    pools: list[Pool]

    @pydantic.model_validator(mode="after")
    def _pools_name_known_systems(self) -> "Profile":
        for pool in self.pools:
            if pool.system not in self.systems:
                known = ", ".join(sorted(self.systems))
                raise ValueError(f"pool {pool.prefix!r} names unknown system {pool.system!r} ({known})")
        return self

    @property
    def node_count(self) -> int:
        return sum(pool.count for pool in self.pools)

    @property
    def gpu_count(self) -> int:
        return sum(pool.count * self.systems[pool.system].gpus for pool in self.pools)


def available() -> list[str]:
    """The names of the shipped profiles, sorted."""
    return sorted(path.stem for path in locations.data_dir("profiles").glob("*.yaml"))


def load(name_or_path: str) -> Profile:
    """The profile named ``name_or_path`` (a shipped name, or a YAML file's path)."""
    path = Path(name_or_path)
    if not (name_or_path.endswith((".yaml", ".yml")) and path.is_file()):
        path = locations.data_dir("profiles") / f"{name_or_path}.yaml"
        if not path.is_file():
            raise UserError(
                f"unknown profile {name_or_path!r}; choose one of {', '.join(available())} "
                "or give the path of a profile YAML file"
            )
    raw = read_yaml(path, "profile")
    try:
        return Profile.model_validate(raw)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise UserError(f"profile {path}: {where}: {first['msg']}") from None


def nodes(profile: Profile) -> list[dict[str, Any]]:
    """The Node objects of ``profile``, in a stable order, ready to create."""
    result = []
    for pool in profile.pools:
        system = profile.systems[pool.system]
        for index in range(pool.count):
            leaf = index // pool.leaf_size
            spine = leaf // pool.leaves_per_spine
            name = f"{pool.prefix}-{index + 1:04d}"
            resources = {
                "cpu": system.cpu,
                "memory": system.memory,
                "pods": str(system.pods),
                "ephemeral-storage": "3Ti",
                GPU_RESOURCE: str(system.gpus),
                **system.devices,
            }
            result.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {
                            KWOK_ANNOTATION: "fake",
                            "node.alpha.kubernetes.io/ttl": "0",
                        },
                        "labels": {
                            HOSTNAME_LABEL: name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                            "node.kubernetes.io/instance-type": pool.system,
                            "nvidia.com/gpu.present": "true",
                            "nvidia.com/gpu.product": system.gpu_product,
                            "nvidia.com/gpu.count": str(system.gpus),
                            "nvidia.com/gpu.memory": str(system.gpu_memory_mib),
                            "nvidia.com/gpu.family": system.gpu_family,
                            "nvidia.com/gpu.machine": system.machine,
                            SPINE_LABEL: f"{pool.prefix}-spine-{spine + 1}",
                            LEAF_LABEL: f"{pool.prefix}-su-{leaf + 1:02d}",
                            **pool.labels,
                        },
                    },
                    "spec": {},
                    "status": {
                        "allocatable": resources,
                        "capacity": resources,
                        "nodeInfo": {
                            "architecture": "amd64",
                            "operatingSystem": "linux",
                            "kubeletVersion": "kwok",
                            "kubeProxyVersion": "kwok",
                            "osImage": "DGX OS (simulated by kwok)",
                            "kernelVersion": "",
                            "containerRuntimeVersion": "",
                            "machineID": "",
                            "systemUUID": "",
                            "bootID": "",
                        },
                        "phase": "Running",
                    },
                }
            )
    return result
