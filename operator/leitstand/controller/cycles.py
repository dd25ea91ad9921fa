"""One scheduling cycle of the live operator: store → snapshot → ``core.schedule`` → writes.

The order of writes matters for safety: binds first (only while this replica
leads), then evictions and releases, then the TrainingJob controller's pods,
Services and statuses, then GPUQuota statuses. Every write is idempotent, so a
crash at any point is repaired by the next cycle: a gang left partly bound is
completed or released by the core, a missing pod is recreated, a status that
did not land is patched again. Statuses are patched only when they change.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from leitstand.controller import jobs as job_control
from leitstand.controller.configuration import Configuration
from leitstand.core import model
from leitstand.core.scheduling import schedule
from leitstand.kube import binder, recorder, resources, snapshots
from leitstand.kube.client import ApiError, Body, Client
from leitstand.kube.store import Store
from leitstand.metrics.observing import SchedulerMetrics

logger = logging.getLogger("leitstand.controller")
JOBS_PATH = f"/apis/{resources.API_VERSION}/namespaces/{{namespace}}/trainingjobs/{{name}}"
QUOTA_PATH = f"/apis/{resources.API_VERSION}/gpuquotas/{{name}}"


@dataclass
class Outcome:
    """What one cycle did, for logs, metrics and tests."""

    decisions: model.Decisions
    latest: model.CycleRecord
    bound_pods: int = 0
    bind_failures: int = 0
    released_gangs: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Cycles:
    """Runs cycles for one operator process; remembers which Services exist."""

    def __init__(
        self,
        client: Client,
        store: Store,
        config: Configuration,
        leading: Callable[[], bool],
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.config = config
        self.settings = config.settings()
        self.policy = model.Policy(topology_levels=self.settings.levels, starvation_seconds=config.starvation_seconds)
        self.leading = leading
        self.services: set[str] = set()
        self.last: Outcome | None = None
        self.metrics = metrics

    async def _gather(self, calls: Iterable[Awaitable[Any]]) -> None:
        limit = asyncio.Semaphore(self.config.bind_concurrency)

        async def one(call: Awaitable[Any]) -> None:
            async with limit:
                try:
                    await call
                except ApiError as error:
                    if error.status not in (404, 409):
                        logger.warning("write failed: %s", error)
                except OSError as error:
                    logger.warning("write failed: %s", error)

        await asyncio.gather(*(one(call) for call in calls))

    async def run_once(self) -> Outcome | None:
        """One cycle; None when this replica does not lead (a standby never writes)."""
        if not self.leading():
            return None
        started = time.monotonic()
        store = self.store
        snapshot, pod_of_job, pods_of_gang = snapshots.build(
            store.nodes.values(), store.quotas.values(), store.pods.values(), self.settings, store.jobs.values()
        )
        now = time.time()
        decisions = schedule(snapshot, self.policy, now=now)
        outcome = Outcome(decisions, model.CycleRecord(snapshot, decisions, self.policy, now))
        await self._bind(decisions, pod_of_job, pods_of_gang, outcome)
        await self._nominate(decisions, pod_of_job, pods_of_gang)
        await self._evict_plain_pods(decisions, pod_of_job)
        await self._reconcile_jobs(decisions, outcome, now)
        await self._plain_pod_conditions(decisions, pod_of_job)
        await self._quota_statuses(decisions)
        outcome.seconds = time.monotonic() - started
        self.last = outcome
        if self.metrics is not None:
            levels = self.settings.levels
            self.metrics.observe_cycle(
                snapshot, decisions, seconds=outcome.seconds, ended=time.time(),
                level=levels[-2] if len(levels) >= 2 else None, levels=levels,
            )  # fmt: skip
            self.metrics.observe_binds(bound=outcome.bound_pods, failed=outcome.bind_failures)
            self.metrics.observe_jobs(
                (
                    decisions.job_queues.get(model.JobKey(key), "none"),
                    (body.get("status") or {}).get("phase") or "Queued",
                )
                for key, body in self.store.jobs.items()
            )
        return outcome

    # -- binds ---------------------------------------------------------------------------------

    async def _bind(
        self,
        decisions: model.Decisions,
        pod_of_job: dict[model.JobKey, Body],
        pods_of_gang: dict[model.JobKey, dict[int, Body]],
        outcome: Outcome,
    ) -> None:
        gangs: dict[model.JobKey, list[binder.PodBind]] = {}
        for bind in decisions.binds:
            plain = pod_of_job.get(bind.job)
            if plain is not None:
                meta = plain["metadata"]
                gangs[bind.job] = [binder.PodBind(meta["namespace"], meta["name"], meta.get("uid"), bind.nodes[0])]
                continue
            members = pods_of_gang.get(bind.job, {})
            waiting = [rank for rank in sorted(members) if not members[rank].get("spec", {}).get("nodeName")]
            if len(waiting) != len(bind.nodes):
                continue  # pods still being created; the next cycle binds the whole gang
            gangs[bind.job] = [
                binder.PodBind(
                    members[rank]["metadata"]["namespace"],
                    members[rank]["metadata"]["name"],
                    members[rank]["metadata"].get("uid"),
                    node,
                )
                for rank, node in zip(waiting, bind.nodes, strict=True)
            ]
        if not gangs or not self.leading():
            return
        flat = [pod_bind for binds in gangs.values() for pod_bind in binds]
        results = await binder.bind_all(
            self.client, flat, concurrency=self.config.bind_concurrency, allowed=self.leading
        )
        for result in results:  # assume what was bound until the watch confirms it: the next cycle must not redo it
            pod = self.store.pods.get(f"{result.bind.namespace}/{result.bind.name}")
            if result.ok and pod is not None and not pod.get("spec", {}).get("nodeName"):
                self.store.pods[f"{result.bind.namespace}/{result.bind.name}"] = _assumed(
                    pod, nodeName=result.bind.node
                )
        failed = {(r.bind.namespace, r.bind.name): r.reason for r in results if not r.ok}
        if not self.leading():  # deposed mid-batch: the new leader owns every decision from here on
            return
        outcome.bound_pods = sum(1 for r in results if r.ok)
        outcome.bind_failures = len(failed)
        for key, binds in gangs.items():
            gang_failures = [failed[(b.namespace, b.name)] for b in binds if (b.namespace, b.name) in failed]
            if not gang_failures:
                continue
            logger.warning("binding gang %s failed part-way (%s); releasing it", key, gang_failures[0])
            outcome.released_gangs.append(key)
            await self._gather(self._delete_pod(pod, 0) for pod in pods_of_gang.get(key, {}).values())

    async def _nominate(
        self,
        decisions: model.Decisions,
        pod_of_job: dict[model.JobKey, Body],
        pods_of_gang: dict[model.JobKey, dict[int, Body]],
    ) -> None:
        """Stores every waiting job's nomination on its pods' ``status.nominatedNodeName`` (one node per
        replica, by rank) and clears the ones that lapsed, so a restarted operator keeps them.

        The store's copy is updated at once: the next cycle must not read the old value and undo it.
        """
        bound = {bind.job for bind in decisions.binds}
        wanted: dict[str, tuple[Body, str | None]] = {}
        for key, pod in pod_of_job.items():
            nodes = decisions.nominations.get(key, ())
            wanted[_pod_key(pod)] = (pod, nodes[0] if nodes else None)
        for key, members in pods_of_gang.items():
            nodes = decisions.nominations.get(key, ())
            waiting = [rank for rank in sorted(members) if not members[rank].get("spec", {}).get("nodeName")]
            for index, rank in enumerate(waiting):
                wanted[_pod_key(members[rank])] = (members[rank], nodes[index] if len(nodes) == len(waiting) else None)
        writes = []
        for name, (pod, target) in wanted.items():
            if (pod.get("status") or {}).get("nominatedNodeName") == target:
                continue
            if target is None and (pod.get("spec", {}).get("nodeName") or _job_key(pod) in bound):
                continue  # bound pods keep what they had; nothing reads it any more
            current = self.store.pods.get(name)
            if current is None or current["metadata"].get("uid") != pod["metadata"].get("uid"):
                continue  # deleted (or replaced) while this cycle bound: nothing to nominate
            meta = pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            writes.append(self.client.patch(path, {"status": {"nominatedNodeName": target}}, patch_type="merge"))
            status = {**(current.get("status") or {}), "nominatedNodeName": target}
            self.store.pods[name] = {**current, "status": status}  # what the watch will confirm
        await self._gather(writes)

    async def _evict_plain_pods(self, decisions: model.Decisions, pod_of_job: dict[model.JobKey, Body]) -> None:
        victims = [
            (eviction, pod_of_job[eviction.job]) for eviction in decisions.evictions if eviction.job in pod_of_job
        ]
        grace = self.config.eviction_grace_seconds
        await self._gather(self._delete_pod(pod, grace) for _eviction, pod in victims)
        await self._gather(
            recorder.record(self.client, {"apiVersion": "v1", "kind": "Pod", **pod}, "Warning", "Preempted", e.message)
            for e, pod in victims
        )

    def _delete_pod(self, pod: Body, grace: int) -> Awaitable[Body]:
        meta = pod["metadata"]
        return self.client.delete(
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", grace_period_seconds=grace
        )

    # -- TrainingJobs ---------------------------------------------------------------------------

    async def _reconcile_jobs(self, decisions: model.Decisions, outcome: Outcome, now: float) -> None:
        explanations = {e.job: e for e in decisions.pending}
        bound = {b.job for b in decisions.binds}
        evictions = {e.job: e for e in decisions.evictions}
        releases = {r.job: r for r in decisions.releases}
        writes: list[Awaitable[Any]] = []
        for body in list(self.store.jobs.values()):
            meta = body["metadata"]
            key = model.JobKey(f"{meta['namespace']}/{meta['name']}")
            try:
                resources.TrainingJobSpec.model_validate(body.get("spec") or {})
            except ValueError as error:  # the API server validated it; only an older schema's leftovers fail
                logger.warning("skipping TrainingJob %s: %s", key, error)
                continue
            verdict = job_control.Verdict(
                explanation=explanations.get(key),
                bound=key in bound and key not in outcome.released_gangs,
                evicted=evictions.get(key),
                released=releases.get(key),
                queue=decisions.job_queues.get(key),
            )
            pods = job_control.pods_by_rank(body, self.store.pods)
            plan = job_control.plan(
                body,
                pods,
                verdict,
                now=now,
                eviction_grace_seconds=self.config.eviction_grace_seconds,
                settings=self.settings,
                nodes=self.store.nodes,
                service_exists=f"{meta['namespace']}/{meta['name']}" in self.services,
            )
            writes.extend(self._apply_plan(body, plan))
            self._observe_start(body, plan, verdict.queue)
        await self._gather(writes)

    def _observe_start(self, body: Body, plan: job_control.Plan, queue: str | None) -> None:
        """Wait time from queued to running, observed once, when the job starts."""
        if self.metrics is None or plan.status is None or plan.status.get("phase") != "Running":
            return
        if (body.get("status") or {}).get("phase") == "Running":
            return
        queued = snapshots.timestamp(plan.status.get("queuedAt"))
        started = snapshots.timestamp(plan.status.get("startedAt"))
        if queued is not None and started is not None:
            self.metrics.observe_started(queue or "none", started - queued)

    def _apply_plan(self, body: Body, plan: job_control.Plan) -> list[Awaitable[Any]]:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        job_path = JOBS_PATH.format(namespace=namespace, name=name)
        writes: list[Awaitable[Any]] = []
        if plan.add_finalizer:
            writes.append(
                self._set_finalizers(job_path, meta, [*(meta.get("finalizers") or []), job_control.FINALIZER])
            )
        if plan.remove_finalizer:
            kept = [f for f in meta.get("finalizers") or [] if f != job_control.FINALIZER]
            writes.append(self._set_finalizers(job_path, meta, kept))
        if plan.service is not None:
            writes.append(self._create_service(namespace, name, plan.service))
        for pod in plan.create:
            writes.append(self.client.create(f"/api/v1/namespaces/{namespace}/pods", pod))
        for pod_name, grace in plan.delete:
            writes.append(
                self.client.delete(f"/api/v1/namespaces/{namespace}/pods/{pod_name}", grace_period_seconds=grace)
            )
        if plan.status is not None:
            writes.append(self.client.patch(f"{job_path}/status", {"status": plan.status}))
        involved = {"apiVersion": resources.API_VERSION, "kind": "TrainingJob", **body}
        for event in plan.events:
            writes.append(recorder.record(self.client, involved, event.type, event.reason, event.message))
        return writes

    def _set_finalizers(self, path: str, meta: Body, finalizers: list[str]) -> Awaitable[Body]:
        """Sets the finalizers, guarded by resourceVersion so a concurrent change is not overwritten."""
        return self.client.patch(
            path, {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        )

    def _replace_status(self, path: str, status: Body) -> Awaitable[Body]:
        """Replaces the whole status (a JSON patch), so fields that no longer apply are removed too."""
        return self.client.patch(path, [{"op": "add", "path": "/status", "value": status}], patch_type="json")

    async def _create_service(self, namespace: str, name: str, service: Body) -> None:
        try:
            await self.client.create(f"/api/v1/namespaces/{namespace}/services", service)
        except ApiError as error:
            if error.status != 409:
                raise
        self.services.add(f"{namespace}/{name}")

    # -- plain pods and queues ---------------------------------------------------------------------

    async def _plain_pod_conditions(self, decisions: model.Decisions, pod_of_job: dict[model.JobKey, Body]) -> None:
        """Waiting plain pods get ``PodScheduled=False`` with the reason, as kube-scheduler does."""
        writes = []
        for explanation in decisions.pending:
            pod = pod_of_job.get(explanation.job)
            if pod is None:
                continue
            conditions = pod.get("status", {}).get("conditions") or []
            current: Body = next((c for c in conditions if c.get("type") == "PodScheduled"), {})
            message = f"{explanation.reason.value}: {explanation.message}"
            if current.get("status") == "False" and current.get("message") == message:
                continue
            condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                         "lastTransitionTime": job_control.rfc3339(time.time())}  # fmt: skip
            meta = pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            writes.append(self.client.patch(path, {"status": {"conditions": [condition]}}, patch_type="strategic"))
        await self._gather(writes)

    async def _quota_statuses(self, decisions: model.Decisions) -> None:
        running: dict[str, int] = {}
        pending: dict[str, int] = {}
        for job in self.store.jobs.values():
            meta = job["metadata"]
            queue = decisions.job_queues.get(model.JobKey(f"{meta['namespace']}/{meta['name']}"))
            phase = (job.get("status") or {}).get("phase")
            if queue is None:
                continue
            if phase == "Running":
                running[queue] = running.get(queue, 0) + 1
            elif phase in {None, "Queued", "Preempted"}:
                pending[queue] = pending.get(queue, 0) + 1
        conflicts = _conflicts(self.store.quotas.values())
        writes = []
        for name, body in self.store.quotas.items():
            numbers = decisions.queues.get(model.QueueName(name), {})
            gpus: dict[str, dict[str, int]] = {
                t: {
                    "guaranteed": s.guaranteed,
                    "allocated": s.allocated,
                    "fairShare": s.fair_share,
                    "reclaiming": s.reclaiming,
                    "pending": s.pending,
                }
                for t, s in sorted(numbers.items())
                if s.guaranteed or s.allocated or s.fair_share or s.pending or s.reclaiming or s.limit is not None
            }

            def column(field: str, per_type: dict[str, dict[str, int]] = gpus) -> str:
                return ",".join(f"{t}={v[field]}" for t, v in per_type.items()) or "-"

            old = body.get("status") or {}
            cycle_problem = decisions.queue_problems.get(model.QueueName(name))
            problem = cycle_problem or conflicts.get(name)
            previous = {c.get("type"): c for c in old.get("conditions") or []}
            valid_status = "False" if problem else "True"
            valid = previous.get("Valid")
            if (
                valid is None
                or valid.get("status") != valid_status
                or valid.get("message") != (problem or "consistent")
            ):
                valid = {
                    "type": "Valid",
                    "status": valid_status,
                    "reason": "ParentCycle" if cycle_problem else "NamespaceConflict" if problem else "Consistent",
                    "message": problem or "consistent",
                    "lastTransitionTime": job_control.rfc3339(time.time()),
                    "observedGeneration": body["metadata"].get("generation", 1),
                }
            status = {
                "gpus": gpus,
                "summary": {
                    "guaranteed": column("guaranteed"),
                    "allocated": column("allocated"),
                    "fairShare": column("fairShare"),
                    "pending": column("pending"),
                },
                "runningJobs": running.get(name, 0),
                "pendingJobs": pending.get(name, 0),
                "conditions": [valid],
                "observedGeneration": body["metadata"].get("generation", 1),
            }
            if status != old:
                writes.append(self._replace_status(QUOTA_PATH.format(name=name) + "/status", status))
        await self._gather(writes)


def _pod_key(pod: Body) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _job_key(pod: Body) -> str:
    meta = pod["metadata"]
    owner = (meta.get("labels") or {}).get(snapshots.JOB_LABEL)
    return f"{meta['namespace']}/{owner}" if owner else f"{meta['namespace']}/pods/{meta['name']}"


def _assumed(pod: Body, **changes: str) -> Body:
    """A copy of ``pod`` with spec.nodeName or metadata.deletionTimestamp set as we just made it."""
    copy = {**pod, "metadata": dict(pod["metadata"]), "spec": dict(pod.get("spec") or {})}
    for field_name, value in changes.items():
        (copy["spec"] if field_name == "nodeName" else copy["metadata"])[field_name] = value
    return copy


def _conflicts(quotas: Iterable[Body]) -> dict[str, str]:
    """Leaf queues that claim the same namespace, with a message naming the others."""
    parents = {str((q.get("spec") or {}).get("parent")) for q in quotas}
    claims: dict[str, list[str]] = {}
    for quota in quotas:
        name = quota["metadata"]["name"]
        if name in parents:
            continue
        for namespace in (quota.get("spec") or {}).get("namespaces") or []:
            claims.setdefault(namespace, []).append(name)
    result: dict[str, str] = {}
    for namespace, owners in sorted(claims.items()):
        if len(owners) > 1:
            for owner in owners:
                others = ", ".join(sorted(o for o in owners if o != owner))
                result[owner] = (
                    f"namespace {namespace} is also claimed by {others}; neither schedules it until one drops it"
                )
    return result
