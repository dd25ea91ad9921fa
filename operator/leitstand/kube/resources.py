"""TrainingJob and GPUQuota: the pydantic models that are the one source of truth.

The CRDs in ``crds/`` are generated from these models (``leitstand crds``), so a
field's type, bounds, default, description and cross-field rules are written
once, here. Rules that the API server must enforce (immutability, limit ≥
guaranteed, ...) are CEL ``x-kubernetes-validations`` attached with ``cel``;
the API server rejects a bad manifest before Leitstand ever sees it.

The same models parse the bodies the operator watches, so Python and the API
server agree on what a valid object is.
"""

import re
from typing import Any, Literal

import pydantic
from pydantic.alias_generators import to_camel

GROUP = "leitstand.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
GPU_TYPE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LEVEL_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY_RULE = "isQuantity(self)"

DURATION = r"^([0-9]+(\.[0-9]+)?[hms])+$"  # 72h, 1h30m, 90s: a Go duration in hours, minutes and seconds
DURATION_HELP = "a duration such as 72h, 1h30m or 90s"

Priority = Literal["train", "build", "inference"]
Phase = Literal["Queued", "Running", "Succeeded", "Failed", "Preempted"]


def cel(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """``json_schema_extra`` for CEL rules: (rule, message[, fieldPath])."""
    validations = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) == 3:
            entry["fieldPath"] = rule[2]
        validations.append(entry)
    return {"x-kubernetes-validations": validations}


def duration_field(name: str, description: str) -> Any:
    """An optional duration field (``DURATION``), longer than 0s, named ``name`` on the wire."""
    return pydantic.Field(
        default=None,
        max_length=32,
        pattern=DURATION,
        json_schema_extra=cel(("duration(self) > duration('0s')", f"{name} must be longer than 0s")),
        description=description,
    )


class Model(pydantic.BaseModel):
    """camelCase on the wire, strict about unknown fields, frozen once parsed."""

    model_config = pydantic.ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


# -- TrainingJob ---------------------------------------------------------------------------


POD_TEMPLATE = "x-leitstand-pod-template"  # marks the field whose schema is core/v1's PodTemplateSpec


class Topology(Model):
    """Where the replicas may go on the network fabric (levels such as spine, leaf, node)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=cel(
            ("has(self.required) || has(self.preferred)", "topology needs required, preferred, or both"),
            (
                "!has(self.required) || !has(self.preferred) || self.required != self.preferred",
                "preferred must be a finer level than required, not the same one",
            ),
        )
    )

    required: str | None = pydantic.Field(
        default=None,
        max_length=63,
        pattern=LEVEL_NAME,
        description=(
            "Topology level (for example spine or leaf) that must hold every replica in one domain; "
            "the job waits until one domain of that level has room for all of it."
        ),
    )
    preferred: str | None = pydantic.Field(
        default=None,
        max_length=63,
        pattern=LEVEL_NAME,
        description="Topology level to pack into as few domains as possible, when the job fits.",
    )


class Checkpoint(Model):
    """How the job saves its work, so that preemption chooses the victims that lose the least."""

    interval_seconds: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=31_536_000,
        description=(
            "The job saves its work about this often. The work at risk of a preemption is the time since the "
            "last save: counted in whole intervals from the latest reported save (the annotation "
            "leitstand.dev/last-checkpoint, RFC 3339, on the TrainingJob or any of its pods), else from the start."
        ),
    )


class TrainingJobSpec(Model):
    """A gang of identical replicas that start together or not at all."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=cel(
            (
                "!has(oldSelf.gpuType) || (has(self.gpuType) && self.gpuType == oldSelf.gpuType)",
                "gpuType is immutable once set; delete and recreate the job to change it",
                ".gpuType",
            ),
            (
                "!has(self.minReplicas) || self.minReplicas <= self.replicas",
                "minReplicas must not be more than replicas (the most the job grows to)",
                ".minReplicas",
            ),
        )
    )

    replicas: int = pydantic.Field(
        ge=1,
        le=4096,
        description="Number of pods of the gang; all are placed together or none is.",
        json_schema_extra=cel(("self == oldSelf", "replicas is immutable; delete and recreate the job to change it")),
    )
    min_replicas: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=4096,
        description=(
            "Elastic: the job starts once this many replicas can be placed together (its gang) and grows, one "
            "replica at a time, up to replicas into GPUs nobody entitled to them waits for. Replicas above it "
            "are always preemptible and are given back first, the highest ranks first; below it the job is "
            "only ever preempted whole. Its pods get torchrun's elastic settings (PET_NNODES=min:max and a c10d "
            "rendezvous on the job's Service). Not elastic when absent or equal to replicas."
        ),
        json_schema_extra=cel(
            ("self == oldSelf", "minReplicas is immutable; delete and recreate the job to change it")
        ),
    )
    gpus_per_replica: int = pydantic.Field(
        ge=0,
        le=8,
        description="GPUs of each replica (0 to 8, one DGX B200 at most).",
        json_schema_extra=cel(
            ("self == oldSelf", "gpusPerReplica is immutable; delete and recreate the job to change it")
        ),
    )
    gpu_type: str | None = pydantic.Field(
        default=None,
        max_length=63,
        pattern=GPU_TYPE,
        description="GPU type short name (such as b200 or rtx-pro-6000); any type when absent.",
    )
    priority: Priority = pydantic.Field(
        default="train",
        description=(
            "train: preemptible, may use over-quota capacity (the default). "
            "build: not preemptible, runs only within guaranteed quota. "
            "inference: not preemptible, scheduled first."
        ),
    )
    topology: Topology | None = pydantic.Field(
        default=None, description="Placement on the network fabric; anywhere when absent."
    )
    backoff_limit: int = pydantic.Field(
        default=3,
        ge=0,
        le=100,
        description="Restarts of the whole gang after a replica fails, before the job is Failed.",
    )
    runtime_limit: str | None = duration_field(
        "runtimeLimit",
        f"How long the job may run once all replicas run, {DURATION_HELP}; then it ends Failed "
        "(RuntimeLimitExceeded). Its queue's defaultRuntimeLimit when absent, at most the smallest "
        "maxRuntimeLimit on its queue's path; unbounded when none is set.",
    )
    checkpoint: Checkpoint | None = pydantic.Field(
        default=None,
        description=(
            "How often the job saves its work. Reclaim evicts the jobs with the least GPU-hours since their "
            "last checkpoint; the annotation leitstand.dev/last-checkpoint (RFC 3339) reports one."
        ),
    )
    template: dict[str, Any] = pydantic.Field(
        description=(
            "The pod every replica runs: a core/v1 PodTemplateSpec (metadata with labels and annotations, and a "
            "full pod spec). Leitstand owns and sets schedulerName, restartPolicy (Never), hostname, subdomain, "
            "the nvidia.com/gpu request and limit (gpusPerReplica, on the first container when no container "
            "asks for GPUs), the rank environment (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT and torchrun's "
            "PET_ variables) and the labels leitstand.dev/job and leitstand.dev/replica; a template that sets "
            "any of them differently ends the job Failed (InvalidTemplate)."
        ),
        json_schema_extra={POD_TEMPLATE: True},
    )


class Condition(Model):
    """A condition in the metav1.Condition form."""

    type: str = pydantic.Field(max_length=316, description="Type of the condition, in CamelCase.")
    status: Literal["True", "False", "Unknown"] = pydantic.Field(description="True, False or Unknown.")
    reason: str = pydantic.Field(max_length=1024, description="Machine-readable reason, in CamelCase.")
    message: str = pydantic.Field(default="", max_length=32768, description="What happened, for people.")
    last_transition_time: str = pydantic.Field(
        json_schema_extra={"format": "date-time"}, description="When the status last changed."
    )
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The .metadata.generation the condition was set for."
    )


class Placement(Model):
    """Where the gang runs."""

    domains: list[str] = pydantic.Field(
        default_factory=list, description="Topology domains that hold the replicas, such as leaf groups."
    )
    nodes: list[str] = pydantic.Field(default_factory=list, description="Nodes of the replicas, by rank.")


class Replicas(Model):
    """How many replicas run now, and between which bounds (an elastic job moves between them)."""

    current: int = pydantic.Field(default=0, ge=0, description="Replicas bound to nodes now.")
    min: int = pydantic.Field(default=0, ge=0, description="The gang: fewer never run (minReplicas, else replicas).")
    max: int = pydantic.Field(default=0, ge=0, description="The most the job grows to (replicas).")


class TrainingJobStatus(Model):
    """What Leitstand did with the job and why it waits."""

    phase: Phase | None = pydantic.Field(default=None, description="Queued, Running, Succeeded, Failed or Preempted.")
    conditions: list[Condition] | None = pydantic.Field(
        default=None,
        description="Latest observations: Scheduled, Running, Preempting, Finished.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    queue: str | None = pydantic.Field(default=None, description="The GPUQuota whose queue holds the job.")
    queue_position: int | None = pydantic.Field(
        default=None, ge=0, description="Place in the queue's order, 1 being next; absent once running."
    )
    gpus: int | None = pydantic.Field(default=None, ge=0, description="GPUs of the whole gang.")
    replicas: Replicas | None = pydantic.Field(
        default=None, description="An elastic job's replicas running now, and the least and most it runs with."
    )
    placement: Placement | None = pydantic.Field(default=None, description="Where the gang runs.")
    reason: str | None = pydantic.Field(default=None, description="Why the job waits, in CamelCase.")
    message: str | None = pydantic.Field(default=None, description="Why the job waits, with the numbers.")
    restarts: int | None = pydantic.Field(default=None, ge=0, description="Gang restarts so far.")
    estimated_start_time: str | None = pydantic.Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the job is expected to start, from a forward plan of the queues (runtime limits, "
        "no new arrivals); a reserved gang's is its reservation's start when that is sooner.",
    )
    queued_at: str | None = pydantic.Field(
        default=None, json_schema_extra={"format": "date-time"}, description="When the job entered its queue."
    )
    started_at: str | None = pydantic.Field(
        default=None, json_schema_extra={"format": "date-time"}, description="When all replicas ran."
    )
    finished_at: str | None = pydantic.Field(
        default=None, json_schema_extra={"format": "date-time"}, description="When the job ended."
    )
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The .metadata.generation this status describes."
    )


# -- GPUQuota ------------------------------------------------------------------------------


class GPUShare(Model):
    """A queue's share of one GPU type."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.limit) || self.limit >= self.guaranteed",
                "limit must be at least guaranteed",
                ".limit",
            )
        )
    )

    guaranteed: int = pydantic.Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="GPUs the queue is always entitled to (its deserved quota).",
    )
    limit: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Hard cap on GPUs, over-quota included; no cap when absent.",
    )
    over_quota_weight: int = pydantic.Field(
        default=1,
        ge=0,
        le=1000,
        description="Weight in sharing GPUs beyond the guarantees; 0 takes none of the surplus.",
    )


class Reservation(Model):
    """A node pool that only this queue may use."""

    node_selector: dict[str, str] = pydantic.Field(
        min_length=1,
        description="Labels that pick the reserved nodes (for example leitstand.dev/pool: soofi).",
    )
    lend_idle: bool = pydantic.Field(
        default=False,
        description="Lend idle reserved GPUs to other queues as preemptible capacity, taken back first.",
    )


class GPUQuotaSpec(Model):
    """A queue: its place in the tree, its tenants, and its GPU shares."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.gpus) || self.gpus.all(t, t.matches('" + GPU_TYPE + "'))",
                "GPU types are short lower-case names such as b200 or rtx-pro-6000",
                ".gpus",
            ),
            (
                "!has(self.defaultRuntimeLimit) || !has(self.maxRuntimeLimit) || "
                "duration(self.defaultRuntimeLimit) <= duration(self.maxRuntimeLimit)",
                "defaultRuntimeLimit must not be longer than maxRuntimeLimit",
                ".defaultRuntimeLimit",
            ),
        )
    )

    parent: str | None = pydantic.Field(
        default=None,
        max_length=253,
        pattern=DNS_LABEL,
        description="Name of the parent GPUQuota; a top-level queue when absent.",
    )
    namespaces: list[str] | None = pydantic.Field(
        default=None,
        max_length=1000,
        description="Namespaces whose workloads this leaf queue holds; each belongs to at most one leaf.",
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "items": {"type": "string", "maxLength": 63, "pattern": DNS_LABEL},
        },
    )
    gpus: dict[str, GPUShare] = pydantic.Field(
        default_factory=dict,
        description="Shares per GPU type short name (for example b200).",
        json_schema_extra={"maxProperties": 64},
    )
    reservation: Reservation | None = pydantic.Field(default=None, description="Nodes reserved for this queue alone.")
    min_runtime_seconds: int = pydantic.Field(
        default=0,
        ge=0,
        le=31_536_000,
        description="A job of this queue younger than this is never evicted to reclaim GPUs.",
    )
    default_runtime_limit: str | None = duration_field(
        "defaultRuntimeLimit",
        f"runtimeLimit of jobs below this queue that set none, {DURATION_HELP}; the nearest one wins.",
    )
    max_runtime_limit: str | None = duration_field(
        "maxRuntimeLimit",
        f"The longest runtimeLimit a job below this queue may ask for, {DURATION_HELP}; "
        "a job asking for more is Failed (RuntimeLimitTooLong).",
    )
    max_preemption_grace_seconds: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=86_400,
        description=(
            "The longest a preempted job below this queue may take to exit (its pods' grace period); the job's "
            "own terminationGracePeriodSeconds otherwise. The smallest on a job's queue path binds it."
        ),
    )
    preemption_notice_seconds: int = pydantic.Field(
        default=0,
        ge=0,
        le=3600,
        description=(
            "Seconds between the preemption notice of a TrainingJob below this queue (the Preempting "
            "condition, an Event and its pods' leitstand.dev/preempt-at annotation) and the deletion of its "
            "pods; the nearest queue that sets one wins. 0: deleted at once, with their grace period."
        ),
    )


class GPUUsage(Model):
    """A queue's numbers for one GPU type."""

    guaranteed: int = pydantic.Field(default=0, ge=0, description="GPUs guaranteed.")
    allocated: int = pydantic.Field(default=0, ge=0, description="GPUs its jobs hold now, terminating ones included.")
    fair_share: int = pydantic.Field(default=0, ge=0, description="GPUs it deserves right now.")
    reclaiming: int = pydantic.Field(
        default=0, ge=0, description="GPUs being freed for its nominated jobs (their victims still terminate)."
    )
    pending: int = pydantic.Field(default=0, ge=0, description="GPUs its other waiting jobs ask for.")


class QuotaSummary(Model):
    """The per-type numbers as text, for kubectl's columns (for example b200=400)."""

    guaranteed: str = pydantic.Field(default="", description="Guaranteed GPUs per type.")
    allocated: str = pydantic.Field(default="", description="Allocated GPUs per type.")
    fair_share: str = pydantic.Field(default="", description="Fair share per type.")
    pending: str = pydantic.Field(default="", description="Pending GPU demand per type.")


class Usage(Model):
    """What the queue used over time, remembered by the fair share."""

    over_quota_gpu_seconds: int = pydantic.Field(
        default=0,
        alias="overQuotaGPUSeconds",
        ge=0,
        description="GPU-seconds held above the guarantees, halved every half-life (usageHalfLifeSeconds).",
    )
    updated_at: str = pydantic.Field(json_schema_extra={"format": "date-time"}, description="As of when.")


class GPUQuotaStatus(Model):
    """What the queue holds and deserves."""

    gpus: dict[str, GPUUsage] | None = pydantic.Field(default=None, description="Numbers per GPU type.")
    summary: QuotaSummary | None = pydantic.Field(default=None, description="The numbers as column text.")
    usage: Usage | None = pydantic.Field(
        default=None, description="Decayed over-quota usage; kept here so that it survives operator restarts."
    )
    running_jobs: int | None = pydantic.Field(default=None, ge=0, description="Running jobs.")
    pending_jobs: int | None = pydantic.Field(default=None, ge=0, description="Waiting jobs.")
    conditions: list[Condition] | None = pydantic.Field(
        default=None,
        description="Valid (the tree and namespaces are consistent) and why not.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The .metadata.generation this status describes."
    )


def duration_seconds(text: str | None) -> float | None:
    """Seconds of a duration such as ``72h`` or ``1h30m`` (as ``DURATION`` accepts); None for None."""
    if text is None:
        return None
    factors = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return sum(float(number) * factors[unit] for number, unit in re.findall(r"([0-9]+(?:\.[0-9]+)?)([hms])", text))
