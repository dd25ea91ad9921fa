"""Snapshots and decisions as plain JSON-ready data, for dump and offline replay.

``dump`` and ``load`` are exact inverses for any snapshot the operator builds
(one exception: a job with reserved nodes but no reservation start, which no
caller makes, loads with its start at infinity, where ``schedule`` sorts it
anyway): a snapshot dumped from a live operator and loaded elsewhere gives
``schedule`` the same input, hence the same decisions and explanations. Pure:
building dicts, not writing files.
"""

import math
from typing import Any

from leitstand.core.model import (
    Decisions,
    Finished,
    GPUType,
    Job,
    JobKey,
    Node,
    NodeName,
    Policy,
    Priority,
    Queue,
    QueueName,
    Reservation,
    Share,
    Snapshot,
)

FORMAT = "leitstand.dev/snapshot/v1"


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in value)


def dump(snapshot: Snapshot, policy: Policy, *, now: float) -> dict[str, Any]:
    """Everything a cycle decides from, as JSON-ready data (sorted, so dumps diff well)."""
    return {
        "format": FORMAT,
        "now": now,
        "policy": {
            "topologyLevels": list(policy.topology_levels),
            "defaultPreferredLevel": policy.default_preferred_level,
            "starvationSeconds": policy.starvation_seconds,
            "preemption": policy.preemption,
            "backfill": policy.backfill,
            "reservations": policy.reservations,
        },
        "nodes": [
            {
                "name": n.name,
                "gpuType": n.gpu_type,
                "gpus": n.gpus,
                "cpuMillis": n.cpu_millis,
                "memoryBytes": n.memory_bytes,
                "domains": list(n.domains),
                "labels": [list(pair) for pair in n.labels],
                "ready": n.ready,
                "taints": [list(taint) for taint in n.taints],
            }
            for n in sorted(snapshot.nodes, key=lambda n: n.name)
        ],
        "queues": [
            {
                "name": q.name,
                "parent": q.parent,
                "namespaces": list(q.namespaces),
                "shares": {
                    t: {"guaranteed": s.guaranteed, "limit": s.limit, "weight": s.weight}
                    for t, s in sorted(q.shares.items())
                },
                "reservation": None
                if q.reservation is None
                else {
                    "nodeSelector": [list(pair) for pair in q.reservation.node_selector],
                    "lendIdle": q.reservation.lend_idle,
                },
                "minRuntimeSeconds": q.min_runtime_seconds,
                "defaultRuntimeLimit": q.default_runtime_limit,
                "maxRuntimeLimit": q.max_runtime_limit,
                "usage": q.usage,
                "preemptionNotice": q.preemption_notice,
                "maxPreemptionGrace": q.max_preemption_grace,
            }
            for q in sorted(snapshot.queues, key=lambda q: q.name)
        ],
        "jobs": [
            {
                "key": j.key,
                "namespace": j.namespace,
                "replicas": j.replicas,
                "gpusPerReplica": j.gpus_per_replica,
                "cpuMillisPerReplica": j.cpu_millis_per_replica,
                "memoryBytesPerReplica": j.memory_bytes_per_replica,
                "gpuType": j.gpu_type,
                "priority": j.priority.name.lower(),
                "requiredLevel": j.required_level,
                "preferredLevel": j.preferred_level,
                "nodeSelector": [list(pair) for pair in j.node_selector],
                "tolerations": [list(toleration) for toleration in j.tolerations],
                "submitted": j.submitted,
                "placement": list(j.placement),
                "started": j.started,
                "terminating": j.terminating,
                "nominated": list(j.nominated),
                "runtimeLimit": j.runtime_limit,
                "reserved": list(j.reserved),
                "reservedStart": None if j.reserved_start is None else _finite(j.reserved_start),
                "checkpointInterval": j.checkpoint_interval,
                "lastCheckpoint": j.last_checkpoint,
            }
            for j in sorted(snapshot.jobs, key=lambda j: j.key)
        ],
        "finished": [
            {"namespace": f.namespace, "ran": f.ran, "runtimeLimit": f.runtime_limit, "finished": f.finished}
            for f in sorted(snapshot.finished, key=lambda f: (f.namespace, f.finished, f.ran, f.runtime_limit or -1.0))
        ],
    }


def load(data: dict[str, Any]) -> tuple[Snapshot, Policy, float]:
    """The snapshot, policy and time of a ``dump``; KeyError/ValueError/TypeError on malformed data."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a Leitstand snapshot (format {data.get('format')!r}, expected {FORMAT!r})")
    p = data["policy"]
    policy = Policy(
        topology_levels=tuple(p["topologyLevels"]),
        default_preferred_level=p["defaultPreferredLevel"],
        starvation_seconds=float(p["starvationSeconds"]),
        preemption=bool(p["preemption"]),
        backfill=bool(p.get("backfill", True)),  # absent in older dumps
        reservations=int(p.get("reservations", Policy().reservations)),
    )
    nodes = tuple(
        Node(
            name=NodeName(n["name"]),
            gpu_type=GPUType(n["gpuType"]) if n["gpuType"] is not None else None,
            gpus=int(n["gpus"]),
            cpu_millis=int(n["cpuMillis"]),
            memory_bytes=int(n["memoryBytes"]),
            domains=tuple(n["domains"]),
            labels=_pairs(n["labels"]),
            ready=bool(n["ready"]),
            taints=tuple((str(k), str(v), str(e)) for k, v, e in n.get("taints", [])),  # absent in older dumps
        )
        for n in data["nodes"]
    )
    queues = tuple(
        Queue(
            name=QueueName(q["name"]),
            parent=QueueName(q["parent"]) if q["parent"] is not None else None,
            namespaces=tuple(q["namespaces"]),
            shares={
                GPUType(t): Share(
                    int(s["guaranteed"]), None if s["limit"] is None else int(s["limit"]), int(s["weight"])
                )
                for t, s in q["shares"].items()
            },
            reservation=None
            if q["reservation"] is None
            else Reservation(_pairs(q["reservation"]["nodeSelector"]), bool(q["reservation"]["lendIdle"])),
            min_runtime_seconds=float(q["minRuntimeSeconds"]),
            default_runtime_limit=_seconds(q.get("defaultRuntimeLimit")),  # absent in older dumps
            max_runtime_limit=_seconds(q.get("maxRuntimeLimit")),
            usage=float(q.get("usage", 0.0)),  # absent in older dumps
            preemption_notice=float(q.get("preemptionNotice", 0.0)),
            max_preemption_grace=_seconds(q.get("maxPreemptionGrace")),
        )
        for q in data["queues"]
    )
    jobs = tuple(
        Job(
            key=JobKey(j["key"]),
            namespace=j["namespace"],
            replicas=int(j["replicas"]),
            gpus_per_replica=int(j["gpusPerReplica"]),
            cpu_millis_per_replica=int(j["cpuMillisPerReplica"]),
            memory_bytes_per_replica=int(j["memoryBytesPerReplica"]),
            gpu_type=GPUType(j["gpuType"]) if j["gpuType"] is not None else None,
            priority=Priority[j["priority"].upper()],
            required_level=j["requiredLevel"],
            preferred_level=j["preferredLevel"],
            node_selector=_pairs(j["nodeSelector"]),
            tolerations=tuple((str(k), str(o), str(v), str(e)) for k, o, v, e in j.get("tolerations", [])),
            submitted=float(j["submitted"]),
            placement=tuple(NodeName(n) if n is not None else None for n in j["placement"]),
            started=None if j["started"] is None else float(j["started"]),
            terminating=bool(j.get("terminating", False)),  # absent in older dumps
            nominated=tuple(NodeName(n) for n in j.get("nominated", [])),
            runtime_limit=_seconds(j.get("runtimeLimit")),
            reserved=tuple(NodeName(n) for n in j.get("reserved", [])),
            reserved_start=_start(j.get("reservedStart"), reserved=bool(j.get("reserved"))),
            checkpoint_interval=_seconds(j.get("checkpointInterval")),  # absent in older dumps
            last_checkpoint=_seconds(j.get("lastCheckpoint")),
        )
        for j in data["jobs"]
    )
    finished = tuple(
        Finished(str(f["namespace"]), float(f["ran"]), _seconds(f.get("runtimeLimit")), float(f["finished"]))
        for f in data.get("finished", [])  # absent in older dumps
    )
    return Snapshot(nodes, queues, jobs, finished), policy, float(data["now"])


def describe(decisions: Decisions) -> dict[str, Any]:
    """Decisions as JSON-ready data: binds, evictions, releases, explanations and queue numbers."""
    return {
        "binds": [{"job": b.job, "nodes": list(b.nodes)} for b in decisions.binds],
        "evictions": [
            {"job": e.job, "reason": e.reason.value, "for": e.beneficiary, "message": e.message}
            for e in decisions.evictions
        ],
        "releases": [{"job": r.job, "message": r.message} for r in decisions.releases],
        "pending": [
            {"job": e.job, "reason": e.reason.value, "message": e.message, "queue": e.queue, "position": e.position}
            for e in decisions.pending
        ],
        "nominations": {job: list(nodes) for job, nodes in decisions.nominations.items()},
        "reserved": {
            job: {"start": _finite(r.start), "nodes": list(r.nodes), "domain": r.domain, "blockers": list(r.blockers)}
            for job, r in decisions.reserved.items()
        },
        "backfilled": list(decisions.backfilled),
        "queueProblems": dict(decisions.queue_problems),
        "namespaceConflicts": dict(decisions.namespace_conflicts),
        "queues": {
            name: {
                t: {
                    "guaranteed": s.guaranteed,
                    "limit": s.limit,
                    "fairShare": s.fair_share,
                    "allocated": s.allocated,
                    "reclaiming": s.reclaiming,
                    "pending": s.pending,
                }
                for t, s in per_type.items()
            }
            for name, per_type in decisions.queues.items()
        },
    }


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)


def _start(value: float | None, *, reserved: bool) -> float | None:
    """A carried reservation's start: null is no start, or (for a job with reserved nodes) infinity."""
    if value is None:
        return math.inf if reserved else None
    return float(value)


def _finite(value: float) -> float | None:
    """JSON has no infinity: a start that waits for jobs without a limit is null."""
    return None if value == math.inf else value
