"""The TrainingJob controller's decisions: pods, Service, phase, status and Events of one job.

``plan`` is a pure function of a job, its pods, what the scheduler just
decided about it, and the time: it returns the writes that bring the cluster
in line (pods to create or delete, the status to patch when it changed, the
Events of each transition). The operator applies plans; this module never
talks to the API server, so every rule here is testable without one.

Phases: Queued until every replica runs; Running; Succeeded when every replica
succeeded; a failed replica restarts the whole gang (all pods deleted and
recreated) up to ``backoffLimit`` times, then Failed; Preempted while an
evicted gang's pods go away, then Queued again.

Preemption is graceful: an evicted job gets the ``Preempting`` condition and a
Warning Event naming the reason and the beneficiary, and its pods the
annotation ``leitstand.dev/preempt-at`` (RFC 3339). When that moment comes (at
once, unless the queue gives ``preemptionNoticeSeconds``; within a notice, a
minute after the job's next checkpoint by its interval, ``model.stop_time``, or
as soon as it reports one) its pods are deleted with the job's grace period
(``terminationGracePeriodSeconds`` of its template, at most the queue's
``maxPreemptionGraceSeconds``), so a training loop that traps SIGTERM can save
its work. A job whose pods carry the annotation is
leaving: the snapshot marks it terminating, so it is never scheduled or evicted
again meanwhile.
"""

import copy
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from leitstand.core import model
from leitstand.kube import bodies, resources
from leitstand.kube.objects import Body, Node, OwnerReference, Pod, TrainingJob, labels, pod_spec, pod_status, status

MASTER_PORT = 29500
FINALIZER = "leitstand.dev/pods"
ESTIMATE_SLACK = 0.1  # an estimated start moves in the status only by more than this part of the wait left
MESSAGE_LIMIT = 32_768  # a condition's message, as metav1.Condition allows


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(slots=True)
class Plan:
    """The writes that reconcile one job."""

    create: list[Body] = field(default_factory=list)
    delete: list[tuple[str, int]] = field(default_factory=list)  # (pod name, grace seconds)
    service: Body | None = None
    status: Body | None = None  # the whole new status, when it changed
    events: list[Event] = field(default_factory=list)
    remove_finalizer: bool = False
    add_finalizer: bool = False
    annotate: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (pod name, annotations to merge)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the scheduling cycle said about one job."""

    explanation: model.Explanation | None = None
    bound: bool = False
    evicted: model.Eviction | None = None
    released: model.Release | None = None
    queue: str | None = None
    runtime_limit: float | None = None  # seconds it may run (its own, or its queue's default, at most the maximum)
    estimate: model.Planned | None = None  # when it is expected to start (its reservation's, or the forecast's)
    grace_seconds: int | None = None  # a preempted job's pods' grace period (None: the operator's default)
    stops_at: float | None = None  # when an evicted job's pods are deleted (None: now): after its notice
    refused: str | None = None  # why the API server refused to create the job's pods, for good (pod security, ...)
    shrunk: tuple[model.Eviction | model.Release, ...] = ()  # an elastic job's replicas above its gang that stop


def rfc3339(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def estimated_start(estimate: model.Planned | None, shown: str | None, now: float) -> str | None:
    """The start to show, to the minute (rounded up): the one shown stays while the new one is within
    ``ESTIMATE_SLACK`` of it (at least two minutes), so a moving plan does not rewrite statuses all the time.
    A ``shown`` that is not a time (on a pod, an annotation anyone may edit) is replaced."""
    if estimate is None or estimate.start == math.inf:
        return None
    start = math.ceil(max(estimate.start, now) / 60) * 60
    try:
        before = bodies.timestamp(shown)
    except ValueError:
        before = None
    if before is not None and abs(start - before) <= max(120.0, ESTIMATE_SLACK * max(before - now, 0.0)):
        return shown
    return rfc3339(start)


def pod_name(job: str, rank: int) -> str:
    return f"{job}-{rank}"


def pods_by_rank(job: TrainingJob, pods: Mapping[str, Pod]) -> dict[int, Pod]:
    """The job's pods (same namespace, job label) by replica rank."""
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    result: dict[int, Pod] = {}
    for pod in pods.values():
        pod_labels = labels(pod)
        if pod_labels.get(bodies.JOB_LABEL) != name or pod["metadata"].get("namespace") != namespace:
            continue
        try:
            rank = int(pod_labels.get(bodies.REPLICA_LABEL, ""))
        except ValueError:
            continue
        result[rank] = pod
    return result


def service_manifest(job: TrainingJob) -> Body:
    """The headless Service that gives every replica a stable DNS name for rendezvous."""
    meta = job["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {bodies.JOB_LABEL: meta["name"]},
            "ownerReferences": [_owner(job)],
        },
        "spec": {
            "clusterIP": "None",
            "selector": {bodies.JOB_LABEL: meta["name"]},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT}],
            "publishNotReadyAddresses": True,
        },
    }


def _owner(job: TrainingJob) -> OwnerReference:
    return {
        "apiVersion": resources.API_VERSION,
        "kind": "TrainingJob",
        "name": job["metadata"]["name"],
        "uid": job["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def rank_environment(job: TrainingJob, spec: resources.TrainingJobSpec, rank: int) -> list[Body]:
    """What every container of replica ``rank`` learns of the gang: torch.distributed's variables, and
    torchrun's ``PET_`` ones, so that a bare ``torchrun train.py`` joins the rendezvous."""
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    master = f"{pod_name(name, 0)}.{name}.{namespace}.svc"
    values: dict[str, object] = {
        "WORLD_SIZE": spec.replicas,
        "RANK": rank,
        "MASTER_ADDR": master,
        "MASTER_PORT": MASTER_PORT,
    }
    gang = bodies.gang_size(spec)
    if gang < spec.replicas:  # elastic: torchrun's c10d rendezvous on replica 0 (always in the gang), MIN:MAX nodes
        values |= {
            "PET_NNODES": f"{gang}:{spec.replicas}",
            "PET_RDZV_BACKEND": "c10d",
            "PET_RDZV_ENDPOINT": f"{master}:{MASTER_PORT}",
            "PET_RDZV_ID": job["metadata"].get("uid") or name,
        }
    else:
        values |= {
            "PET_NNODES": spec.replicas,
            "PET_NODE_RANK": rank,
            "PET_MASTER_ADDR": master,
            "PET_MASTER_PORT": MASTER_PORT,
        }
    return [{"name": key, "value": str(value)} for key, value in values.items()]


def pod_manifest(job: TrainingJob, spec: resources.TrainingJobSpec, rank: int) -> Body:
    """Replica ``rank`` of the job: the template's pod, scheduled by Leitstand, owned by the job, with the GPUs
    of ``gpusPerReplica`` and the rank environment. The template was checked by ``bodies.template_problem``."""
    meta = job["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    template = copy.deepcopy(spec.template)
    pod: Body = template.get("spec") or {}
    environment = rank_environment(job, spec, rank)
    containers = pod.get("containers") or []
    for container in [*(pod.get("initContainers") or []), *containers]:
        container["env"] = [*(container.get("env") or []), *environment]
    if spec.gpus_per_replica and not bodies.asks_for_gpus(pod) and containers:
        needs = containers[0].setdefault("resources", {})
        for part in ("requests", "limits"):
            needs.setdefault(part, {})[bodies.GPU_RESOURCE] = str(spec.gpus_per_replica)
    pod.update(
        schedulerName=bodies.SCHEDULER_NAME, restartPolicy="Never", hostname=pod_name(name, rank), subdomain=name
    )
    template_meta = template.get("metadata") or {}
    labels = {**(template_meta.get("labels") or {}), bodies.JOB_LABEL: name, bodies.REPLICA_LABEL: str(rank)}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(name, rank),
            "namespace": namespace,
            "labels": labels,
            "annotations": dict(template_meta.get("annotations") or {}),
            "ownerReferences": [_owner(job)],
        },
        "spec": pod,
    }


def _condition(
    previous: list[Body], kind: str, status: bool, reason: str, message: str, now: str, generation: int
) -> Body:
    message = message[:MESSAGE_LIMIT]
    text = "True" if status else "False"
    for old in previous:
        if old.get("type") == kind and old.get("status") == text:
            return {**old, "reason": reason, "message": message, "observedGeneration": generation}
    return {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "observedGeneration": generation,
    }


def plan(
    job: TrainingJob,
    pods: Mapping[int, Pod],
    verdict: Verdict,
    *,
    now: float,
    eviction_grace_seconds: int,
    settings: bodies.Settings,
    nodes: Mapping[str, Node],
    service_exists: bool,
) -> Plan:
    """The writes that reconcile ``job`` with its ``pods`` after this cycle's ``verdict``. Pure."""
    result = Plan()
    meta = job["metadata"]
    old: Body = dict(status(job))
    spec = bodies.job_spec(job)
    live = {rank: pod for rank, pod in pods.items() if not pod["metadata"].get("deletionTimestamp")}
    gang = bodies.gang_size(spec)
    stopping: list[int] = []  # an elastic job's replicas above its gang that stop now; the gang runs on
    for stop in verdict.shrunk:
        stopping += [rank for rank in stop.ranks if rank >= gang and rank in live]
    for rank in sorted(set(stopping)):
        live.pop(rank)
    terminating = len(pods) - len(live)
    phases = {rank: pod_status(pod).get("phase", "Pending") for rank, pod in live.items()}
    finalizers = meta.get("finalizers") or []

    if meta.get("deletionTimestamp"):
        result.delete = [(pod["metadata"]["name"], 0) for pod in live.values()]
        result.remove_finalizer = FINALIZER in finalizers and not pods
        return result
    if FINALIZER not in finalizers:
        result.add_finalizer = True

    new: Body = dict(old)
    new["gpus"] = spec.replicas * spec.gpus_per_replica
    if gang < spec.replicas:  # elastic: how many run now, between its bounds
        new["replicas"] = {
            "current": sum(1 for pod in live.values() if pod_spec(pod).get("nodeName")
                           and pod_status(pod).get("phase") not in bodies.TERMINAL),
            "min": gang,
            "max": spec.replicas,
        }  # fmt: skip
    new["queue"] = verdict.queue
    new["observedGeneration"] = meta.get("generation", 1)
    new.setdefault("queuedAt", meta.get("creationTimestamp") or rfc3339(now))
    new.setdefault("restarts", 0)
    previous_phase = old.get("phase")
    phase = previous_phase or "Queued"
    reason, message = old.get("reason"), old.get("message")

    def transition(new_phase: str, new_reason: str | None, new_message: str | None, event: Event | None) -> None:
        nonlocal phase, reason, message
        phase, reason, message = new_phase, new_reason, new_message
        if event is not None and (new_phase != previous_phase or new_reason != old.get("reason")):
            result.events.append(event)

    if previous_phase in {"Succeeded", "Failed"}:
        result.delete = [(p["metadata"]["name"], 0) for r, p in live.items() if phases[r] not in bodies.TERMINAL]
        return result

    if stopping:
        grace = verdict.grace_seconds if verdict.grace_seconds is not None else eviction_grace_seconds
        result.delete += [(pods[rank]["metadata"]["name"], grace) for rank in sorted(set(stopping))]
        for stop in verdict.shrunk:
            ranks = ", ".join(str(rank) for rank in stop.ranks)
            if isinstance(stop, model.Eviction):
                text = f"{stop.reason.value} for {stop.beneficiary}: {stop.message} (ranks {ranks})"
            else:
                text = f"released replicas {ranks}: {stop.message}"
            result.events.append(Event("Normal", "Shrinking", text))
    started = bodies.timestamp(old.get("startedAt"))
    explanation = verdict.explanation
    notice_at = bodies.preempt_at(live.values())  # a preemption already noticed, its pods not yet deleted
    # even if told; an elastic job when its gang and every replica that ran succeeded (the rest never started)
    succeeded = all(phases.get(rank) == "Succeeded" for rank in range(gang)) and all(
        p == "Succeeded" for r, p in phases.items() if r < gang or pod_spec(live[r]).get("nodeName")
    )
    notified = next((c for c in old.get("conditions") or [] if c.get("type") == "Preempting"), None)
    preempting: tuple[str, str] | None = None  # (reason, message) of this preemption
    if notified is not None and notified.get("status") == "True":
        preempting = (str(notified.get("reason")), str(notified.get("message") or ""))
    problem = bodies.template_problem(spec)
    if problem is not None or verdict.refused is not None:
        why = "InvalidTemplate" if problem is not None else "PodRefused"
        text = problem or f"the API server refused the job's pods: {verdict.refused}"
        result.delete = [(pod["metadata"]["name"], 0) for pod in live.values()]
        transition("Failed", why, text, Event("Warning", why, text))
        new["finishedAt"] = rfc3339(now)
    elif explanation is not None and explanation.reason is model.Reason.RUNTIME_LIMIT_TOO_LONG:
        result.delete = [(pod["metadata"]["name"], 0) for pod in live.values()]
        text = explanation.message
        transition("Failed", explanation.reason.value, text, Event("Warning", explanation.reason.value, text))
        new["finishedAt"] = rfc3339(now)
    elif (
        previous_phase == "Running"
        and verdict.runtime_limit is not None
        and started is not None
        and now - started >= verdict.runtime_limit
        and verdict.evicted is None
        and any(p not in bodies.TERMINAL for p in phases.values())  # a gang that finished in time is not failed
    ):
        limit = model.duration_text(verdict.runtime_limit)
        text = f"ran to its runtime limit of {limit}; its pods were deleted"
        result.delete = [(p["metadata"]["name"], 0) for r, p in live.items() if phases[r] not in bodies.TERMINAL]
        transition("Failed", "RuntimeLimitExceeded", text, Event("Warning", "RuntimeLimitExceeded", text))
        new["finishedAt"] = rfc3339(now)
    elif (verdict.evicted is not None or notice_at is not None) and not succeeded:
        grace = verdict.grace_seconds if verdict.grace_seconds is not None else eviction_grace_seconds
        if notice_at is None and verdict.evicted is not None:
            notice_at = max(now, verdict.stops_at if verdict.stops_at is not None else now)
            eviction = verdict.evicted
            text = f"{eviction.reason.value} for {eviction.beneficiary}: {eviction.message}"
            preempting = (eviction.reason.value, text)
            stamp = rfc3339(notice_at)
            notes = {bodies.PREEMPT_AT_ANNOTATION: stamp}
            result.annotate = [(pod["metadata"]["name"], notes) for pod in live.values()]
            when = "now" if notice_at <= now else f"at {stamp}"
            result.events.append(
                Event("Warning", "Preempting", f"{text}; its pods stop {when}, with {grace} s to save their work")
            )
        told = None  # when a notice running since an earlier cycle began (the Preempting condition turned True)
        if not result.annotate and notified is not None and notified.get("status") == "True":
            told = bodies.timestamp(notified.get("lastTransitionTime"))
        saved = bodies.last_checkpoint(job, *live.values())
        if notice_at is not None and told is not None and saved is not None and saved > told:
            notice_at = now  # it reported a checkpoint since it was told: nothing more to wait for
        if notice_at is not None and notice_at <= now:
            result.delete = [(pod["metadata"]["name"], grace) for pod in live.values()]
            why, text = preempting or (model.Reason.PREEMPTED.value, "preempted")
            said = bool(result.annotate)  # the Preempting Event of this very cycle said it all
            transition("Preempted", why, text, None if said else Event("Warning", "Preempted", text))
            new.pop("startedAt", None)
            new["placement"] = None
    elif any(p == "Failed" for p in phases.values()):
        failed = sorted(rank for rank, p in phases.items() if p == "Failed")
        if new["restarts"] < spec.backoff_limit:
            new["restarts"] += 1
            text = f"replica {failed[0]} failed; restarting the gang ({new['restarts']} of {spec.backoff_limit})"
            result.delete = [(pod["metadata"]["name"], 0) for pod in live.values()]
            transition("Queued", "Restarting", text, Event("Warning", "Restarting", text))
            new.pop("startedAt", None)
            new["placement"] = None
        else:
            text = f"replica {failed[0]} failed and the backoff limit of {spec.backoff_limit} restarts is spent"
            result.delete = [
                (pod["metadata"]["name"], 0) for rank, pod in live.items() if phases[rank] not in bodies.TERMINAL
            ]
            transition("Failed", "BackoffLimitExceeded", text, Event("Warning", "Failed", text))
            new["finishedAt"] = rfc3339(now)
    elif verdict.released is not None:
        result.delete = [(pod["metadata"]["name"], 0) for pod in live.values() if pod_spec(pod).get("nodeName")]
        transition(
            "Queued",
            "GangReleased",
            verdict.released.message,
            Event("Warning", "GangReleased", verdict.released.message),
        )
    elif succeeded:
        transition(
            "Succeeded", "Completed", "every replica succeeded", Event("Normal", "Succeeded", "every replica succeeded")
        )
        new["finishedAt"] = rfc3339(now)
    elif all(phases.get(rank) in {"Running", "Succeeded"} for rank in range(gang)) and (
        gang < spec.replicas or len(live) == spec.replicas
    ):
        placed = [pod_spec(live[rank]).get("nodeName") if rank in live else None for rank in range(spec.replicas)]
        if gang < spec.replicas:  # elastic: the gang runs; replicas above it come and go
            placed = [node for node in placed if node]
            existing = set(pods) | set(stopping)  # a rank's pod is made again once the old one is gone
            result.create = [pod_manifest(job, spec, rank) for rank in range(gang, spec.replicas)
                             if rank not in existing]  # fmt: skip
        new.setdefault("startedAt", rfc3339(now))
        domains = sorted({_domain(nodes.get(node or ""), spec, settings) for node in placed} - {""})
        new["placement"] = {"domains": domains, "nodes": placed}
        if gang < spec.replicas:
            text = f"{len(placed)} of at most {spec.replicas} replicas running on {len(set(placed))} nodes"
            before = (old.get("replicas") or {}).get("current")
            if previous_phase == "Running" and before is not None and before != len(placed):
                grew = "grew" if len(placed) > before else "shrank"
                result.events.append(Event("Normal", "Scaled", f"{grew} from {before} to {len(placed)} replicas"))
        else:
            text = f"all {spec.replicas} replicas running on {len(set(placed))} nodes"
        transition("Running", "Running", text, Event("Normal", "Running", text))
    else:
        if not terminating and FINALIZER in finalizers:  # pods only once deleting the job must wait for them
            existing = set(live)
            result.create = [pod_manifest(job, spec, rank) for rank in range(spec.replicas) if rank not in existing]
        if phase == "Preempted" and (terminating or not live):
            pass  # stays Preempted until the evicted pods are gone and new ones exist
        elif verdict.bound:
            count = f"all {spec.replicas}" if gang == spec.replicas else f"{gang} of at most {spec.replicas}"
            text = f"{count} replicas bound; waiting for them to start"
            transition("Queued", "Scheduled", text, Event("Normal", "Scheduled", text))
        elif verdict.explanation is not None:
            explanation = verdict.explanation
            first = previous_phase is None
            transition(
                "Queued",
                explanation.reason.value,
                explanation.message,
                Event("Normal", "Queued", f"queued in {verdict.queue}: {explanation.message}")
                if first
                else Event("Warning", explanation.reason.value, explanation.message),
            )
        elif phase not in {"Queued", "Preempted"} or previous_phase is None:
            transition("Queued", "Pending", "waiting for its pods", Event("Normal", "Queued", "waiting for its pods"))
    if not service_exists:
        result.service = service_manifest(job)

    new["phase"] = phase
    new["reason"] = reason
    new["message"] = message
    new["queuePosition"] = verdict.explanation.position if verdict.explanation and phase == "Queued" else None
    new["estimatedStartTime"] = (
        estimated_start(verdict.estimate, old.get("estimatedStartTime"), now) if (phase == "Queued") else None
    )
    stamp = rfc3339(now)
    generation = meta.get("generation", 1)
    conditions = list(old.get("conditions") or [])
    why, what = reason or "Pending", message or ""
    running, finished = phase == "Running", phase in {"Succeeded", "Failed"}
    new["conditions"] = [
        _condition(
            conditions,
            "Scheduled",
            phase in {"Running", "Succeeded"} or why == "Scheduled",
            why,
            what,
            stamp,
            generation,
        ),
        _condition(
            conditions, "Running", running, "Running" if running else phase, what if running else "", stamp, generation
        ),
        _condition(
            conditions,
            "Finished",
            finished,
            why if finished else "NotFinished",
            what if finished else "",
            stamp,
            generation,
        ),
    ]
    leaving = phase == "Preempted" or (notice_at is not None and phase not in {"Succeeded", "Failed"})
    if leaving or notified is not None:
        reason_of, text_of = ("NotPreempting", "") if not leaving else preempting or ("Preempted", "")
        new["conditions"].append(_condition(conditions, "Preempting", leaving, reason_of, text_of, stamp, generation))
    written = _status_body(new)
    if written != _status_body(old):
        result.status = written
    return result


def _status_body(status: Body) -> Body:
    """A status as the CRD's model writes it (absent fields left out): what replaces the whole status.

    Built through ``resources.TrainingJobStatus``, the model the CRD is generated
    from, so what is written is what the schema accepts. The whole status is
    replaced, never merged: a field that no longer applies (a queue position once
    running) goes, instead of staying behind and asking for a write every cycle.
    """
    present = {key: value for key, value in status.items() if value is not None}
    parsed = resources.TrainingJobStatus.model_validate(present)
    return parsed.model_dump(mode="json", by_alias=True, exclude_none=True)


def _domain(node: Node | None, spec: resources.TrainingJobSpec, settings: bodies.Settings) -> str:
    """The domain of ``node`` at the job's required (else preferred, else second-finest) level."""
    if node is None:
        return ""
    node_labels = labels(node)
    level = (spec.topology.required or spec.topology.preferred) if spec.topology else None
    keys = dict(settings.topology)
    if level is None and len(settings.topology) >= 2:
        level = settings.topology[-2][0]
    return str(node_labels.get(keys.get(level or "", ""), ""))
