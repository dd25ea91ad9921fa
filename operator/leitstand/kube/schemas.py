"""Generates the CRDs of ``crds/`` from the models in ``resources``.

Pydantic's JSON Schema is turned into a Kubernetes *structural* schema: every
``$ref`` inlined, ``Optional`` unwrapped (absence, not null, means unset),
titles dropped, and the CEL rules and list/map markers of the models kept.
Unknown fields are rejected by the API server's strict field validation (the
kubectl default) rather than by ``additionalProperties: false``, which
structural schemas do not allow beside ``properties``.

Deterministic: the same models always give byte-identical YAML, which the
drift test compares with ``crds/``.
"""

from typing import Any

import pydantic
import yaml

from leitstand.kube import podtemplate, resources

Schema = dict[str, Any]

_DROP = {"title", "additionalProperties", "$defs"}


def _structural(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    outer = dict(node)
    if outer.pop(resources.POD_TEMPLATE, False):
        return {**podtemplate.load(), "description": outer["description"]}
    if "$ref" in outer:
        target = defs[outer.pop("$ref").rsplit("/", 1)[-1]]
        merged = {**target, **outer}
        if "description" in outer:
            merged["description"] = outer["description"]
        return _structural(merged, defs)
    if "anyOf" in outer:
        branches = [branch for branch in outer.pop("anyOf") if branch.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union of {len(branches)} types structurally: {branches}")
        inner = _structural(branches[0], defs)
        if outer.get("default", ...) is None:
            outer.pop("default")
        return _structural({**inner, **outer}, defs)
    result: Schema = {}
    for key, value in outer.items():
        if key in _DROP:
            if key == "additionalProperties" and isinstance(value, dict):
                result[key] = _structural(value, defs)
            continue
        if key == "properties":
            result[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in {"items"}:
            result[key] = _structural(value, defs)
        else:
            result[key] = value
    if "const" in result:
        result["enum"] = [result.pop("const")]
    return result


def structural_schema(model: type[pydantic.BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of ``model``, camelCase, every $ref inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: Schema = _structural(raw, defs)
    if model.__doc__:
        schema["description"] = " ".join(model.__doc__.split())
    return schema


def _column(name: str, json_path: str, kind: str, description: str, priority: int = 0) -> Schema:
    column: Schema = {"name": name, "type": kind, "jsonPath": json_path, "description": description}
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", "date", "Time since the object was created.")


def _definition(
    *,
    kind: str,
    plural: str,
    short_name: str,
    scope: str,
    description: str,
    spec: type[pydantic.BaseModel],
    status: type[pydantic.BaseModel],
    columns: list[Schema],
    root_rules: list[dict[str, str]],
) -> Schema:
    root: Schema = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": structural_schema(spec),
            "status": structural_schema(status),
        },
    }
    if root_rules:
        root["x-kubernetes-validations"] = root_rules
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{resources.GROUP}",
            "labels": {"app.kubernetes.io/name": "leitstand", "app.kubernetes.io/part-of": "leitstand"},
        },
        "spec": {
            "group": resources.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": ["leitstand"],
            },
            "scope": scope,
            "versions": [
                {
                    "name": resources.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [*columns, _AGE],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def definitions() -> dict[str, Schema]:
    """The CRDs by file name (``<plural>.<group>.yaml``)."""
    training_job = _definition(
        kind="TrainingJob",
        plural="trainingjobs",
        short_name="tj",
        scope="Namespaced",
        description=(
            "A distributed training job: replicas x gpusPerReplica GPUs, scheduled by Leitstand as one gang "
            "in the queue (GPUQuota) of its namespace."
        ),
        spec=resources.TrainingJobSpec,
        status=resources.TrainingJobStatus,
        columns=[
            _column("Queue", ".status.queue", "string", "The GPUQuota whose queue holds the job."),
            _column("GPUs", ".status.gpus", "integer", "GPUs of the whole gang."),
            _column("Phase", ".status.phase", "string", "Queued, Running, Succeeded, Failed or Preempted."),
            _column("Reason", ".status.reason", "string", "Why the job waits."),
            _column("Position", ".status.queuePosition", "integer", "Place in its queue.", priority=1),
            _column("Replicas", ".status.replicas.current", "integer", "Replicas running now.", priority=1),
            _column(
                "Image",
                ".spec.template.spec.containers[0].image",
                "string",
                "Image of the first container.",
                priority=1,
            ),
            _column("ETA", ".status.estimatedStartTime", "string", "When it is planned to start (UTC)."),
        ],
        root_rules=[
            {
                "rule": (
                    "self.metadata.name.size() <= 50 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
                ),
                "message": (
                    "a TrainingJob name must start with a letter, use only a-z, 0-9 and '-', and be at most "
                    "50 characters: it names the job's Service and pods"
                ),
            }
        ],
    )
    gpu_quota = _definition(
        kind="GPUQuota",
        plural="gpuquotas",
        short_name="gq",
        scope="Cluster",
        description=(
            "A queue of Leitstand's fair-share tree: guaranteed GPUs, over-quota weight and limit per GPU "
            "type, the namespaces whose workloads it holds, and optionally a reserved node pool."
        ),
        spec=resources.GPUQuotaSpec,
        status=resources.GPUQuotaStatus,
        columns=[
            _column("Parent", ".spec.parent", "string", "The parent queue."),
            _column("Guaranteed", ".status.summary.guaranteed", "string", "Guaranteed GPUs per type."),
            _column("Allocated", ".status.summary.allocated", "string", "Allocated GPUs per type."),
            _column("Fair Share", ".status.summary.fairShare", "string", "Fair share per type."),
            _column("Pending", ".status.summary.pending", "string", "Pending GPU demand per type."),
            _column("Running Jobs", ".status.runningJobs", "integer", "Jobs of the queue running now."),
            _column("Waiting Jobs", ".status.pendingJobs", "integer", "Jobs of the queue waiting to start."),
        ],
        root_rules=[
            {
                "rule": "!has(self.spec.parent) || self.spec.parent != self.metadata.name",
                "message": "a queue may not be its own parent",
                "fieldPath": ".spec.parent",
            },
            {
                "rule": "self.metadata.name.size() <= 63",
                "message": "a GPUQuota name must be at most 63 characters",
            },
        ],
    )
    return {
        f"{training_job['metadata']['name']}.yaml": training_job,
        f"{gpu_quota['metadata']['name']}.yaml": gpu_quota,
    }


def render(definition: Schema) -> str:
    """The YAML text of one CRD, as written to ``crds/``."""
    header = "# Generated by `leitstand crds` from operator/leitstand/kube/resources.py; do not edit.\n"
    return header + yaml.safe_dump(definition, sort_keys=False, width=100, allow_unicode=True)
