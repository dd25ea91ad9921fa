"""The Kubernetes objects Leitstand reads, typed: one module for every body's shape.

Bodies arrive from the API server as JSON (``Body``, a raw object). The
TypedDicts below name the fields Leitstand reads, as the API server sends them;
all keys are optional (``total=False``) because the server omits empty fields.
Read absent parts through the accessors (``pod_spec``, ``pod_status``,
``node_spec``, ``node_status``, ``labels``, ``status``), which give an empty
part instead of ``None``, rather than chaining ``(x.get("status") or {})``.

What Leitstand writes (pods it creates, patches, Events) is built as ``Body``
where it is written (``controller/jobs.py``, ``kube/applier.py``). TrainingJob
and GPUQuota specs are parsed into the models of ``kube/resources.py``, from
which their CRDs are generated.
"""

from collections.abc import Mapping
from typing import Any, TypedDict

Body = dict[str, Any]  # a raw JSON object, as sent or received


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    labels: dict[str, str]
    annotations: dict[str, str]
    creationTimestamp: str
    deletionTimestamp: str
    finalizers: list[str]
    ownerReferences: list[OwnerReference]


class Condition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str


class ResourceRequirements(TypedDict, total=False):
    requests: dict[str, str]
    limits: dict[str, str]


class Container(TypedDict, total=False):
    name: str
    image: str
    resources: ResourceRequirements


class Toleration(TypedDict, total=False):
    key: str
    operator: str
    value: str
    effect: str
    tolerationSeconds: int


class Taint(TypedDict, total=False):
    key: str
    value: str
    effect: str


class PodSpec(TypedDict, total=False):
    schedulerName: str
    nodeName: str
    nodeSelector: dict[str, str]
    tolerations: list[Toleration]
    containers: list[Container]
    initContainers: list[Container]
    activeDeadlineSeconds: int
    priorityClassName: str
    schedulingGroup: dict[str, str]  # upstream's alpha gang API: {"podGroupName": ...}


class PodStatus(TypedDict, total=False):
    phase: str
    nominatedNodeName: str | None
    startTime: str
    conditions: list[Condition]


class Pod(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus


class NodeSpec(TypedDict, total=False):
    unschedulable: bool
    taints: list[Taint]


class NodeStatus(TypedDict, total=False):
    allocatable: dict[str, str]
    capacity: dict[str, str]
    conditions: list[Condition]


class Node(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: NodeSpec
    status: NodeStatus


class CustomResource(TypedDict, total=False):
    """A TrainingJob or GPUQuota: its spec is parsed by the models of ``kube/resources.py``; its status is ours."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: dict[str, Any]


class TrainingJob(CustomResource):
    """A TrainingJob (spec: ``resources.TrainingJobSpec``, status: ``resources.TrainingJobStatus``)."""


class GPUQuota(CustomResource):
    """A GPUQuota (spec: ``resources.GPUQuotaSpec``, status: ``resources.GPUQuotaStatus``)."""


class LeaseSpec(TypedDict, total=False):
    holderIdentity: str
    leaseDurationSeconds: int
    acquireTime: str
    renewTime: str
    leaseTransitions: int


class Lease(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: LeaseSpec


def pod_spec(pod: Pod) -> PodSpec:
    return pod.get("spec") or {}


def pod_status(pod: Pod) -> PodStatus:
    return pod.get("status") or {}


def node_spec(node: Node) -> NodeSpec:
    return node.get("spec") or {}


def node_status(node: Node) -> NodeStatus:
    return node.get("status") or {}


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """An object's labels; empty when it has none."""
    return (obj.get("metadata") or {}).get("labels") or {}


def annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    """An object's annotations; empty when it has none."""
    return (obj.get("metadata") or {}).get("annotations") or {}


def status(obj: CustomResource) -> dict[str, Any]:
    """A custom resource's status; empty before anything was written."""
    return obj.get("status") or {}


def deleting(obj: Mapping[str, Any]) -> bool:
    """Has the object been asked to go (a deletionTimestamp is set)?"""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def key_of(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects): how the store and the core name it."""
    meta = obj["metadata"]
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])
