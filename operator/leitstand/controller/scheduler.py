"""One scheduling cycle of the live operator: one view → ``core.schedule`` → the writes.

A cycle reads the store once (``View``: every kind, through the applier's
overlay of writes the watches have not reported yet), decides from that view
alone, and hands every write to the applier (``kube.applier``). Binds go
first and are awaited (only while this replica leads), so a gang bound part-way
is released in the same cycle; then nominations, evictions and releases, the
TrainingJob controller's pods, Services and statuses, runtime limits, and
GPUQuota statuses are submitted to the applier's background writer, and the
cycle ends without waiting for them. Every write is idempotent, so a crash at
any point is repaired by the next cycle: a gang left partly bound is completed
or released by the core, a missing pod is recreated, a status that did not land
is written again. Statuses are written, whole, only when they change.
"""

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from leitstand.controller import jobs as job_control
from leitstand.controller.configuration import Configuration
from leitstand.controller.forecasting import Forecaster
from leitstand.controller.usage import Ledger
from leitstand.core import model
from leitstand.core.scheduling import schedule
from leitstand.kube import applier, bodies, resources
from leitstand.kube.applier import Applier, PodBind, Write
from leitstand.kube.client import Client
from leitstand.kube.objects import (
    Body,
    Condition,
    GPUQuota,
    Node,
    ObjectMeta,
    Pod,
    TrainingJob,
    annotations,
    labels,
    pod_spec,
    pod_status,
    status,
)
from leitstand.kube.store import Store
from leitstand.metrics.observing import SchedulerMetrics

logger = logging.getLogger("leitstand.controller")
JOBS_PATH = f"/apis/{resources.API_VERSION}/namespaces/{{namespace}}/trainingjobs/{{name}}"
QUOTA_PATH = f"/apis/{resources.API_VERSION}/gpuquotas/{{name}}"
OWNER_KINDS = tuple(kind for kind, _path in bodies.OWNER_COLLECTIONS)  # the store's kinds that own pod groups


@dataclass(frozen=True, slots=True)
class View:
    """The store at one instant, pods read through the applier's overlay: everything one cycle decides from."""

    nodes: Mapping[str, Node]
    pods: Mapping[str, Pod]
    quotas: Mapping[str, GPUQuota]
    jobs: Mapping[str, TrainingJob]
    stored_pods: Mapping[str, Pod]  # the pods as the watches reported them, without the overlay
    owners: Mapping[tuple[str, str, str], Body] = field(default_factory=dict)  # pod groups' owners: (kind, ns, name)


@dataclass
class Report:
    """What one cycle did, for logs, metrics and tests."""

    decisions: model.Decisions
    latest: model.CycleRecord
    bound_pods: int = 0
    bind_failures: int = 0
    released_gangs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # the expected start shown on each waiting gang of pods Leitstand did not create (RFC 3339)
    pod_estimates: dict[model.JobKey, str] = field(default_factory=dict)


class Scheduler:
    """Runs the scheduling cycles of one operator process; remembers which Services exist."""

    def __init__(
        self,
        client: Client,
        store: Store,
        config: Configuration,
        leading: Callable[[], bool],
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.settings = config.settings()
        self.policy = model.Policy(
            topology_levels=self.settings.levels,
            starvation_seconds=config.starvation_seconds,
            backfill=config.backfill,
            reservations=config.reservations,
            moves_per_cycle=config.moves_per_cycle,
            move_budget=config.move_budget_gpu_hours * 3600,
            move_checkpoint_age=config.move_checkpoint_age_seconds,
            move_settle_seconds=config.move_settle_seconds,
        )
        self.reserved: dict[model.JobKey, model.Planned] = {}  # the last cycle's, for the next (this replica's)
        self.forecaster = Forecaster(config.estimate_interval_seconds)
        self.ledger = Ledger(config.usage_half_life_seconds, config.usage_write_interval_seconds)
        self.leading = leading
        self.applier = Applier(client, concurrency=config.bind_concurrency, allowed=leading)
        self.services: set[str] = set()
        self.said: dict[model.JobKey, tuple[str, str]] = {}  # what the last Events of each pod group said
        self.limited: set[str] = set()  # uids of the pods and owners told they reached their runtime limit
        self.refused: dict[str, str] = {}  # TrainingJobs whose pods the API server refused for good: why
        self.last: Report | None = None
        self.metrics = metrics

    def view(self) -> View:
        """The store now, with this replica's unconfirmed writes applied (copies: later events do not leak in)."""
        store = self.store
        pods = dict(store.pods)
        owners = {
            (kind, body["metadata"].get("namespace", ""), body["metadata"]["name"]): body
            for kind in OWNER_KINDS
            for body in store.objects.get(kind, {}).values()
        }
        return View(
            dict(store.nodes), self.applier.overlay.view(pods), dict(store.quotas), dict(store.jobs), pods, owners
        )

    async def run_once(self) -> Report | None:
        """One cycle; None when this replica does not lead (a standby never writes)."""
        if not self.leading():
            self.ledger.forget()
            return None
        started = time.monotonic()
        view = self.view()
        built = bodies.build(
            view.nodes.values(), view.quotas.values(), view.pods.values(), self.settings, view.jobs.values(),
            view.owners,
        )  # fmt: skip
        snapshot, pod_of_job, pods_of_gang = built.snapshot, built.pod_of_job, built.pods_of_gang
        now = time.time()
        snapshot = model.with_reserved(snapshot, self.reserved)
        usage = self.ledger.advance(view.quotas, now)
        if usage:
            remembered = tuple(dataclasses.replace(q, usage=usage.get(q.name, 0.0)) for q in snapshot.queues)
            snapshot = dataclasses.replace(snapshot, queues=remembered)
        decisions = schedule(snapshot, self.policy, now=now)
        self.ledger.record(decisions)
        self.reserved = dict(decisions.reserved)
        self.forecaster.after_cycle(snapshot, self.policy, now)
        outcome = Report(decisions, model.CycleRecord(snapshot, decisions, self.policy, now))
        released = await self._bind(decisions, pod_of_job, pods_of_gang, outcome, snapshot.jobs, now)
        pods = self.applier.overlay.view(view.stored_pods)  # the same instant, with this cycle's binds
        nominations = self._nominations(decisions, pod_of_job, pods_of_gang, snapshot.jobs)
        nominated = {id(write): pod for write, pod in nominations}
        queues = {queue.name: queue for queue in snapshot.queues}
        job_writes, services, creates = self._job_writes(view, pods, decisions, queues, outcome, now)
        writes = [
            *released,
            *(write for write, _pod in nominations),
            *self._plain_evictions(decisions, pod_of_job, queues, now),
            *_limits(built, decisions, queues, now, self.limited),
            *job_writes,
            *self._group_writes(decisions, built, queues, now),
            *self._plain_pod_conditions(decisions, built, outcome, now),
            *self._quota_statuses(view, decisions, now),
        ]

        for pod_nomination in nominated.values():  # assumed at once: the next cycle may start before it lands
            self.applier.overlay.nominated(*pod_nomination)

        def written(result: applier.Outcome) -> None:
            if id(result.write) in nominated and not result.ok:
                self.applier.overlay.not_nominated(*nominated[id(result.write)])
            elif result.ok and id(result.write) in services:
                self.services.add(services[id(result.write)])
            elif not result.ok and id(result.write) in creates and refused_for_good(result):
                self.refused[creates[id(result.write)]] = result.reason

        self.applier.submit(writes, written)  # performed in the background: the next cycle need not wait
        outcome.seconds = time.monotonic() - started
        self.last = outcome
        if self.metrics is not None:
            levels = self.settings.levels
            self.metrics.observe_cycle(
                snapshot, decisions, seconds=outcome.seconds, ended=time.time(),
                level=levels[-2] if len(levels) >= 2 else None, levels=levels,
            )  # fmt: skip
            self.metrics.observe_binds(bound=outcome.bound_pods, failed=outcome.bind_failures)
            if self.forecaster.seconds is not None:
                self.metrics.observe_planning(self.forecaster.seconds)
            self.metrics.observe_jobs(
                (
                    decisions.job_queues.get(model.JobKey(key), "none"),
                    status(body).get("phase") or "Queued",
                )
                for key, body in view.jobs.items()
            )
        return outcome

    # -- binds ---------------------------------------------------------------------------------

    async def _bind(
        self,
        decisions: model.Decisions,
        pod_of_job: dict[model.JobKey, Pod],
        pods_of_gang: dict[model.JobKey, dict[int, Pod]],
        outcome: Report,
        snapshot_jobs: tuple[model.Job, ...],
        now: float,
    ) -> list[Write]:
        """Binds the decided gangs; returns the deletions that release a gang whose binding failed part-way.
        A gang of pods that starts with an expected start on its pods has the estimate's error observed."""
        expected = _expected_starts(decisions, pod_of_job, pods_of_gang)
        gangs: dict[model.JobKey, list[PodBind]] = {}
        growing: set[model.JobKey] = set()  # binds of elastic jobs' replicas above their running gangs
        gang_of = {job.key: job.gang for job in snapshot_jobs if job.elastic}
        for bind in decisions.binds:
            plain = pod_of_job.get(bind.job)
            if plain is not None:
                meta = plain["metadata"]
                gangs[bind.job] = [PodBind(meta["namespace"], meta["name"], meta.get("uid"), bind.nodes[0])]
                continue
            members = pods_of_gang.get(bind.job, {})
            waiting = [rank for rank in sorted(members) if not pod_spec(members[rank]).get("nodeName")]
            if bind.ranks:  # an elastic job: exactly these ranks
                if not all(rank in waiting for rank in bind.ranks):
                    continue  # a pod replaced or bound meanwhile; the next cycle decides again
                waiting = list(bind.ranks)
                if min(bind.ranks) >= gang_of.get(bind.job, 0):
                    growing.add(bind.job)
            if len(waiting) != len(bind.nodes):
                continue  # pods still being created; the next cycle binds the whole gang
            gangs[bind.job] = [
                PodBind(
                    members[rank]["metadata"]["namespace"],
                    members[rank]["metadata"]["name"],
                    members[rank]["metadata"].get("uid"),
                    node,
                )
                for rank, node in zip(waiting, bind.nodes, strict=True)
            ]
        if not gangs or not self.leading():
            return []
        results = await self.applier.bind(bind for binds in gangs.values() for bind in binds)
        failed = {r.write.key: r.reason for r in results if not r.ok and isinstance(r.write, PodBind)}
        if not self.leading():  # deposed mid-batch: the new leader owns every decision from here on
            return []
        outcome.bound_pods = sum(1 for r in results if r.ok)
        outcome.bind_failures = len(failed)
        releases: list[Write] = []
        for key, binds in gangs.items():
            gang_failures = [failed[b.key] for b in binds if b.key in failed]
            if not gang_failures and key in expected and self.metrics is not None:
                self.metrics.observe_estimate_error(decisions.job_queues.get(key, "none"), now - expected[key])
            if not gang_failures or key in growing:  # a replica that did not grow just waits; the gang runs on
                continue
            logger.warning("binding gang %s failed part-way (%s); releasing it", key, gang_failures[0])
            outcome.released_gangs.append(key)
            releases += [_delete_pod(pod, 0) for pod in pods_of_gang.get(key, {}).values()]
        return releases

    def _nominations(
        self,
        decisions: model.Decisions,
        pod_of_job: dict[model.JobKey, Pod],
        pods_of_gang: dict[model.JobKey, dict[int, Pod]],
        snapshot_jobs: tuple[model.Job, ...],
    ) -> list[tuple[Write, tuple[str, str | None, str | None]]]:
        """The writes that store every waiting job's nomination on its pods' ``status.nominatedNodeName``
        (one node per replica, by rank) and clear the ones that lapsed, so a restarted operator keeps them;
        each with its pod (key, uid) and node.

        The patch names the pod's uid, so a pod replaced meanwhile is left alone.
        """
        bound = {bind.job for bind in decisions.binds}
        wanted: dict[str, tuple[Pod, str | None]] = {}
        for key, pod in pod_of_job.items():
            nodes = decisions.nominations.get(key, ())
            wanted[_pod_key(pod)] = (pod, nodes[0] if nodes else None)
        gang_of = {job.key: job.gang for job in snapshot_jobs if job.elastic}  # an elastic gang's ranks only
        for key, members in pods_of_gang.items():
            nodes = decisions.nominations.get(key, ())
            gang = gang_of.get(key, len(members))
            waiting = [r for r in sorted(members) if r < gang and not pod_spec(members[r]).get("nodeName")]
            for index, rank in enumerate(waiting):
                wanted[_pod_key(members[rank])] = (members[rank], nodes[index] if len(nodes) == len(waiting) else None)
        writes: list[tuple[Write, tuple[str, str | None, str | None]]] = []
        for name, (pod, target) in wanted.items():
            if pod_status(pod).get("nominatedNodeName") == target:
                continue
            if target is None and (pod_spec(pod).get("nodeName") or _job_key(pod) in bound):
                continue  # bound pods keep what they had; nothing reads it any more
            meta = pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            body: Body = {"status": {"nominatedNodeName": target}}
            if meta.get("uid"):
                body["metadata"] = {"uid": meta["uid"]}  # a precondition: a replaced pod is left alone
            writes.append((applier.patch(path, body, purpose="nomination"), (name, meta.get("uid"), target)))
        return writes

    def _plain_evictions(
        self,
        decisions: model.Decisions,
        pod_of_job: dict[model.JobKey, Pod],
        queues: Mapping[model.QueueName, model.Queue],
        now: float,
    ) -> list[Write]:
        """Evicted plain pods: told when they stop (at once: a notice is for TrainingJobs), an Event naming the
        job they make room for, and deleted with their own grace period, at most their queues' cap."""
        writes: list[Write] = []
        for eviction in decisions.evictions:
            pod = pod_of_job.get(eviction.job)
            if pod is None:
                continue
            text = f"{eviction.reason.value} for {eviction.beneficiary}: {eviction.message}"
            evicting, grace = self._evict_pod(pod, decisions.job_queues.get(eviction.job), queues, now)
            writes += [
                *evicting,
                applier.event({"apiVersion": "v1", "kind": "Pod", **pod}, "Warning", "Preempting",
                              f"{text}; it stops now, with {grace} s to save its work", now=now),
            ]  # fmt: skip
        return writes

    # -- TrainingJobs ---------------------------------------------------------------------------

    def _job_writes(
        self,
        view: View,
        pods: Mapping[str, Pod],
        decisions: model.Decisions,
        queues: Mapping[model.QueueName, model.Queue],
        outcome: Report,
        now: float,
    ) -> tuple[list[Write], dict[int, str], dict[int, str]]:
        """Every TrainingJob's plan as writes; which of them create a Service, and which a pod (by id, with
        its job)."""
        explanations = {e.job: e for e in decisions.pending}
        bound = {b.job for b in decisions.binds}
        evictions = {e.job: e for e in decisions.evictions if not e.ranks}
        releases = {r.job: r for r in decisions.releases if not r.ranks}
        shrinks: dict[model.JobKey, list[model.Eviction | model.Release]] = {}  # elastic jobs' replicas that stop
        ended: list[model.Eviction | model.Release] = [*decisions.evictions, *decisions.releases]
        for stop in ended:
            if stop.ranks:
                shrinks.setdefault(stop.job, []).append(stop)
        jobs_by_key: dict[model.JobKey, model.Job] = {}  # the snapshot's, read only for preempted jobs
        writes: list[Write] = []
        services: dict[int, str] = {}
        creates: dict[int, str] = {}
        refused, self.refused = self.refused, {}  # a refusal is said once: the job ends Failed with it
        for body in view.jobs.values():
            meta = body["metadata"]
            key = model.JobKey(f"{meta['namespace']}/{meta['name']}")
            try:
                spec = bodies.job_spec(body)
            except ValueError as error:  # the API server validated it; only an older schema's leftovers fail
                logger.warning("skipping TrainingJob %s: %s", key, error)
                continue
            queue = decisions.job_queues.get(key)
            leaf = queue or status(body).get("queue")  # a job out of the snapshot (a replica ended) keeps its queue
            own = resources.duration_seconds(spec.runtime_limit)
            limit, _too_long = model.runtime_limit(own, model.QueueName(leaf) if leaf else None, queues)
            by_rank = job_control.pods_by_rank(body, pods)
            grace, stops = None, None
            if key in evictions or bodies.preempt_at(by_rank.values()) is not None:
                grace, notice = preemption_terms(spec, leaf, queues, self.config.eviction_grace_seconds)
                if not jobs_by_key:
                    jobs_by_key = {job.key: job for job in outcome.latest.snapshot.jobs}
                running = jobs_by_key.get(key)
                stops = model.stop_time(running, now, notice) if running is not None else now + notice
            verdict = job_control.Verdict(
                explanation=explanations.get(key),
                bound=key in bound and key not in outcome.released_gangs,
                evicted=evictions.get(key),
                released=releases.get(key),
                shrunk=tuple(shrinks.get(key, ())),
                queue=queue,
                runtime_limit=limit,
                estimate=self._estimate(decisions, key),
                grace_seconds=grace,
                stops_at=stops,
                refused=refused.get(key),
            )
            try:
                plan = job_control.plan(
                    body,
                    by_rank,
                    verdict,
                    now=now,
                    eviction_grace_seconds=self.config.eviction_grace_seconds,
                    settings=self.settings,
                    nodes=view.nodes,
                    service_exists=key in self.services,
                )
            except ValueError:  # a status the CRD model refuses: a bug here, and no reason to stop the other jobs
                logger.exception("planning TrainingJob %s failed; the other jobs go on", key)
                continue
            planned = self._plan_writes(body, plan, now)
            if plan.service is not None:
                services[id(planned[0])] = key
            creates.update((id(w), key) for w in planned if w.verb == "create" and w.path.endswith("/pods"))
            writes += planned
            self._observe_start(body, plan, verdict.queue)
        return writes, services, creates

    def _estimate(self, decisions: model.Decisions, key: model.JobKey) -> model.Planned | None:
        """The latest forecast's likely start; for a reserved gang, its reservation's start from this cycle
        when that is sooner (the reservation holds if every job runs to its limit)."""
        likely, reserved = self.forecaster.estimates.get(key), decisions.reserved.get(key)
        if reserved is not None and (likely is None or reserved.start < likely.start):
            return reserved
        return likely

    def _observe_start(self, body: TrainingJob, plan: job_control.Plan, queue: str | None) -> None:
        """Wait time from queued to running, observed once, when the job starts."""
        if self.metrics is None or plan.status is None or plan.status.get("phase") != "Running":
            return
        if status(body).get("phase") == "Running":
            return
        queued = bodies.timestamp(plan.status.get("queuedAt"))
        started = bodies.timestamp(plan.status.get("startedAt"))
        if queued is not None and started is not None:
            self.metrics.observe_started(queue or "none", started - queued)
        estimated = bodies.timestamp(status(body).get("estimatedStartTime"))
        if estimated is not None and started is not None:
            self.metrics.observe_estimate_error(queue or "none", started - estimated)

    def _plan_writes(self, body: TrainingJob, plan: job_control.Plan, now: float) -> list[Write]:
        """One job's plan as writes; the Service's creation first, when there is one."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        job_path = JOBS_PATH.format(namespace=namespace, name=name)
        writes: list[Write] = []
        if plan.service is not None:
            writes.append(applier.create(f"/api/v1/namespaces/{namespace}/services", plan.service))
        if plan.add_finalizer:
            writes.append(_finalizers(job_path, meta, [*(meta.get("finalizers") or []), job_control.FINALIZER]))
        if plan.remove_finalizer:
            writes.append(
                _finalizers(job_path, meta, [f for f in meta.get("finalizers") or [] if f != job_control.FINALIZER])
            )
        writes += [applier.create(f"/api/v1/namespaces/{namespace}/pods", pod) for pod in plan.create]
        writes += [  # a preempted job's pods told when they stop (sent beside their deletion, not before it)
            applier.patch(f"/api/v1/namespaces/{namespace}/pods/{pod}", {"metadata": {"annotations": notes}},
                          purpose="preemption")
            for pod, notes in plan.annotate
        ]  # fmt: skip
        writes += [
            applier.delete(f"/api/v1/namespaces/{namespace}/pods/{pod}", grace_seconds=grace)
            for pod, grace in plan.delete
        ]
        if plan.status is not None:
            writes.append(_status_write(f"{job_path}/status", plan.status))
        involved = {"apiVersion": resources.API_VERSION, "kind": "TrainingJob", **body}
        writes += [applier.event(involved, e.type, e.reason, e.message, now=now) for e in plan.events]
        return writes

    # -- plain pods and queues ---------------------------------------------------------------------

    def _plain_pod_conditions(
        self, decisions: model.Decisions, built: bodies.Built, outcome: Report, now: float
    ) -> list[Write]:
        """Waiting pods that Leitstand did not create (gangs of one, pod groups) get ``PodScheduled=False`` with
        the reason, as kube-scheduler does, and their expected start as the annotation
        ``leitstand.dev/estimated-start-time`` (moved as a TrainingJob's status is: ``jobs.estimated_start``);
        the annotation goes when there is no estimate, and once the pods run."""
        writes = []
        waiting = {explanation.job for explanation in decisions.pending}
        for explanation in decisions.pending:
            members = _members(built, explanation.job)
            if not members:
                continue
            shown = annotations(members[0]).get(bodies.ESTIMATED_START_ANNOTATION)
            eta = job_control.estimated_start(self._estimate(decisions, explanation.job), shown, now)
            if eta is not None:
                outcome.pod_estimates[explanation.job] = eta
            for pod in members:
                writes += _pod_scheduled(pod, explanation, now)
                writes += _annotate_start(pod, eta)
        for job in built.snapshot.jobs:
            if job.placement and job.key not in waiting:
                writes += [write for pod in _members(built, job.key) for write in _annotate_start(pod, None)]
        return writes

    def _group_writes(
        self,
        decisions: model.Decisions,
        built: bodies.Built,
        queues: Mapping[model.QueueName, model.Queue],
        now: float,
    ) -> list[Write]:
        """Pod groups (of Jobs, PyTorchJobs, JobSets, PodGroups, annotations): evicted or released whole (their
        pods deleted; the owner's controller makes new ones, which queue again), and explained by Events on
        their pods and their owner whenever what is said of them changes."""
        evictions = {e.job: e for e in decisions.evictions}
        releases = {r.job: r for r in decisions.releases}
        explanations = {e.job: e for e in decisions.pending}
        writes: list[Write] = []
        said: dict[model.JobKey, tuple[str, str]] = {}
        for key, group in built.groups.items():
            members = list(built.pods_of_gang.get(key, {}).values())
            eviction, release = evictions.get(key), releases.get(key)
            word: tuple[str, str, str] | None = None  # (type, reason, message) to say
            if eviction is not None:
                text = f"{eviction.reason.value} for {eviction.beneficiary}: {eviction.message}"
                for pod in members:
                    writes += self._evict_pod(pod, decisions.job_queues.get(key), queues, now)[0]
                word = ("Warning", "Preempting", f"{text}; its {len(members)} pods stop now")
            elif release is not None:
                writes += [_delete_pod(pod, 0) for pod in members if pod_spec(pod).get("nodeName")]
                word = ("Warning", "GangReleased", release.message)
            elif key in built.refused:
                word = ("Warning", "GangRefused", built.refused[key])
            elif key in built.incomplete:
                word = ("Normal", "WaitingForPods", built.incomplete[key])
            elif key in explanations:
                explanation = explanations[key]
                word = ("Normal", explanation.reason.value, f"queued in {explanation.queue}: {explanation.message}")
            if word is None:
                continue
            said[key] = word[1:]
            if self.said.get(key) == word[1:]:
                continue
            involved = [{"apiVersion": "v1", "kind": "Pod", **pod} for pod in members]
            if group.owner is not None:
                involved.append(group.owner)
            writes += [applier.event(target, *word, now=now) for target in involved]
        self.said = said
        return writes

    def _evict_pod(
        self, pod: Pod, queue: model.QueueName | None, queues: Mapping[model.QueueName, model.Queue], now: float
    ) -> tuple[list[Write], int]:
        """A pod told it stops now, marked ``DisruptionTarget`` and then deleted with its own grace period, at most
        its queues' cap (the writes, and that grace)."""
        meta = pod["metadata"]
        own = pod_spec(pod).get("terminationGracePeriodSeconds")
        default = float(own if isinstance(own, int) and own >= 0 else self.config.eviction_grace_seconds)
        grace = round(model.preemption_grace(default, queue, queues))
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        notes = {"metadata": {"annotations": {bodies.PREEMPT_AT_ANNOTATION: job_control.rfc3339(now)}}}
        # DisruptionTarget first, as kube-scheduler sets it: a Job's podFailurePolicy can then ignore the
        # preemption instead of counting it against backoffLimit
        disrupted = {
            "status": {
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "PreemptionByScheduler",
                        "message": f"{bodies.SCHEDULER_NAME}: preempting to make room for another job",
                        "lastTransitionTime": job_control.rfc3339(now),
                    }
                ]
            }
        }
        delete = _delete_pod(pod, grace)
        condition = applier.patch(f"{path}/status", disrupted, patch_type="strategic", purpose="stop", then=delete)
        return [applier.patch(path, notes, purpose="preemption"), condition], grace

    def _quota_statuses(self, view: View, decisions: model.Decisions, now: float) -> list[Write]:
        running: dict[str, int] = {}
        pending: dict[str, int] = {}
        for job in view.jobs.values():
            meta = job["metadata"]
            queue = decisions.job_queues.get(model.JobKey(f"{meta['namespace']}/{meta['name']}"))
            phase = status(job).get("phase")
            if queue is None:
                continue
            if phase == "Running":
                running[queue] = running.get(queue, 0) + 1
            elif phase in {None, "Queued", "Preempted"}:
                pending[queue] = pending.get(queue, 0) + 1
        writes = []
        for name, body in view.quotas.items():
            numbers = decisions.queues.get(model.QueueName(name), {})
            gpus: dict[str, resources.GPUUsage] = {
                str(t): resources.GPUUsage(
                    guaranteed=s.guaranteed,
                    allocated=s.allocated,
                    fair_share=s.fair_share,
                    reclaiming=s.reclaiming,
                    pending=s.pending,
                )
                for t, s in sorted(numbers.items())
                if s.guaranteed or s.allocated or s.fair_share or s.pending or s.reclaiming or s.limit is not None
            }

            def column(field: str, per_type: dict[str, resources.GPUUsage] = gpus) -> str:
                return ",".join(f"{t}={getattr(v, field)}" for t, v in per_type.items()) or "-"

            old = status(body)
            cycle_problem = decisions.queue_problems.get(model.QueueName(name))
            problem = cycle_problem or decisions.namespace_conflicts.get(model.QueueName(name))
            previous = {c.get("type"): c for c in old.get("conditions") or []}
            valid_status = "False" if problem else "True"
            valid = previous.get("Valid")
            generation = body["metadata"].get("generation", 1)
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
                    "lastTransitionTime": job_control.rfc3339(now),
                    "observedGeneration": generation,
                }
            new = resources.GPUQuotaStatus(
                gpus=gpus,
                summary=resources.QuotaSummary(
                    guaranteed=column("guaranteed"),
                    allocated=column("allocated"),
                    fair_share=column("fair_share"),
                    pending=column("pending"),
                ),
                usage=self.ledger.status(name, body, now),
                running_jobs=running.get(name, 0),
                pending_jobs=pending.get(name, 0),
                conditions=[resources.Condition.model_validate(valid)],
                observed_generation=generation,
            ).model_dump(mode="json", by_alias=True, exclude_none=True)  # what the CRD is generated from
            if new != old:
                writes.append(_status_write(QUOTA_PATH.format(name=name) + "/status", new))
        return writes


def preemption_terms(
    spec: resources.TrainingJobSpec, leaf: str | None, queues: Mapping[model.QueueName, model.Queue], default: int
) -> tuple[int, int]:
    """A preempted job's grace period and notice, in seconds: its template's terminationGracePeriodSeconds (else
    ``default``, the operator's evictionGraceSeconds) capped by the smallest maxPreemptionGraceSeconds on its
    queue's path; the nearest preemptionNoticeSeconds there (as the core weighs its victims by it)."""
    own = bodies.template_spec(spec).get("terminationGracePeriodSeconds")
    queue = model.QueueName(leaf) if leaf else None
    grace = model.preemption_grace(float(own if isinstance(own, int) and own >= 0 else default), queue, queues)
    return round(grace), round(model.preemption_notice(queue, queues))


def _members(built: bodies.Built, key: model.JobKey) -> list[Pod]:
    """The pods of a plain pod or pod gang Leitstand did not create; none for a TrainingJob."""
    single = built.pod_of_job.get(key)
    if single is not None:
        return [single]
    return list(built.pods_of_gang.get(key, {}).values()) if key in built.groups else []


def _annotate_start(pod: Pod, eta: str | None) -> list[Write]:
    """``leitstand.dev/estimated-start-time`` set to ``eta`` on ``pod`` (removed for None), unless it is."""
    if annotations(pod).get(bodies.ESTIMATED_START_ANNOTATION) == eta:
        return []
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
    return [applier.patch(path, {"metadata": {"annotations": {bodies.ESTIMATED_START_ANNOTATION: eta}}},
                          purpose="estimated start")]  # fmt: skip


def _expected_starts(
    decisions: model.Decisions,
    pod_of_job: Mapping[model.JobKey, Pod],
    pods_of_gang: Mapping[model.JobKey, dict[int, Pod]],
) -> dict[model.JobKey, float]:
    """The expected start on the pods of each plain pod or pod gang this cycle starts (none of its pods bound
    before: a replaced or added replica is no start), read from ``leitstand.dev/estimated-start-time``."""
    found: dict[model.JobKey, float] = {}
    for bind in decisions.binds:
        plain = pod_of_job.get(bind.job)
        members = [plain] if plain is not None else list(pods_of_gang.get(bind.job, {}).values())
        if not members or bind.ranks or any(pod_spec(pod).get("nodeName") for pod in members):
            continue
        estimated = bodies.annotated_time(members[0], bodies.ESTIMATED_START_ANNOTATION)
        if estimated is not None:
            found[bind.job] = estimated
    return found


def _pod_scheduled(pod: Pod, explanation: model.Explanation, now: float) -> list[Write]:
    """``PodScheduled=False`` on a waiting pod, when its message changed."""
    conditions = pod_status(pod).get("conditions") or []
    current: Condition = next((c for c in conditions if c.get("type") == "PodScheduled"), Condition())
    message = f"{explanation.reason.value}: {explanation.message}"
    if current.get("status") == "False" and current.get("message") == message:
        return []
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                 "lastTransitionTime": job_control.rfc3339(now)}  # fmt: skip
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
    body = {"status": {"conditions": [condition]}}
    return [applier.patch(path, body, patch_type="strategic", purpose="PodScheduled")]


def refused_for_good(outcome: applier.Outcome) -> bool:
    """Whether a refused pod creation will be refused again, whatever the operator does: the pod is invalid
    (400, 422) or its namespace's Pod Security Admission forbids it. Other refusals (a ResourceQuota used up,
    the API server away) pass, and the next cycle creates the pod again."""
    if outcome.status in {400, 422}:
        return True
    return outcome.status == 403 and "violates PodSecurity" in outcome.reason


def _status_write(path: str, status: Body) -> Write:
    """Replaces the whole status (a JSON patch), so fields that no longer apply go instead of staying behind."""
    return applier.patch(path, [{"op": "add", "path": "/status", "value": status}], patch_type="json")


# owners whose controller ends them at a deadline we may move: where the deadline is, from their start
_DEADLINES = {
    "Job": ("/apis/batch/v1/namespaces/{namespace}/jobs/{name}", ("spec",)),
    "PyTorchJob": ("/apis/kubeflow.org/v1/namespaces/{namespace}/pytorchjobs/{name}", ("spec", "runPolicy")),
}


def _limits(
    built: bodies.Built,
    decisions: model.Decisions,
    queues: Mapping[model.QueueName, model.Queue],
    now: float,
    told: set[str] | None = None,
) -> list[Write]:
    """Plain pods and pod gangs (of Jobs, PyTorchJobs, JobSets, PodGroups, annotations) that have run as long as
    their runtime limit allows: every pod deleted, with a Warning Event on each and on the gang's owner. The
    limit is the shortest ``leitstand.dev/runtime-limit`` among the pods, else their queue's default, at most
    its maximum; it counts from the first pod's start, as the core plans it. A pod whose own
    ``activeDeadlineSeconds`` comes by then is the kubelet's to end. A running Job or PyTorchJob is ended
    instead: its ``activeDeadlineSeconds`` is set to the time it has been active, so its controller stops the
    pods and fails it (``DeadlineExceeded``) rather than making new ones; pods still there a cycle later are
    deleted. TrainingJobs end in ``jobs``. ``told`` keeps the pods and owners already told (``uid@start``: each
    run of a gang is told once), pruned to those that still exist."""
    writes: list[Write] = []
    told = set() if told is None else told
    alive = {str(pod["metadata"].get("uid")) for pod in built.pod_of_job.values()}
    alive.update(str(pod["metadata"].get("uid")) for members in built.pods_of_gang.values() for pod in members.values())
    alive.update(str((group.owner.get("metadata") or {}).get("uid")) for group in built.groups.values() if group.owner)
    told.difference_update({entry for entry in told if entry.partition("@")[0] not in alive})
    for job in built.snapshot.jobs:
        if job.started is None or not job.placement:
            continue
        members = _members(built, job.key)
        if not members:
            continue  # a TrainingJob's
        own = [limit for pod in members if (limit := bodies.annotated_runtime_limit(pod)) is not None]
        limit, _too_long = model.runtime_limit(min(own, default=None), decisions.job_queues.get(job.key), queues)
        if limit is None or now - job.started < limit:
            continue
        group = built.groups.get(job.key)
        owner = group.owner if group is not None else None
        ended = _owner_deadline(owner, now) if owner is not None else None
        ending = [
            pod
            for pod in members
            if not (isinstance(deadline := pod_spec(pod).get("activeDeadlineSeconds"), int) and 0 < deadline <= limit)
        ]
        ran = f"ran to its runtime limit of {model.duration_text(limit)}"
        if ended is not None and owner is not None:  # its controller stops the pods and makes no new ones
            writes.append(ended)
            text = f"the gang {ran}; its {owner.get('kind')} ends"
        elif not ending:
            continue
        else:
            writes += [_delete_pod(pod, 0) for pod in ending]
            text = f"the gang {ran}; its {len(ending)} pods deleted" if group is not None else f"{ran}; deleted"
        involved: list[Body] = [{"apiVersion": "v1", "kind": "Pod", **pod} for pod in (ending or members)]
        if owner is not None:
            involved.append(owner)
        for target in involved:
            uid = str((target.get("metadata") or {}).get("uid") or "")
            entry = f"{uid}@{job.started}"  # a gang run again (its owner made new pods) is told again
            if not uid or entry not in told:
                writes.append(applier.event(target, "Warning", "RuntimeLimitExceeded", text, now=now))
                told.add(entry)
    return writes


def _owner_deadline(owner: Body, now: float) -> Write | None:
    """The patch that makes a Job's or PyTorchJob's controller end it now (``owner``: its body, with apiVersion
    and kind): its ``activeDeadlineSeconds`` set to the seconds since its ``status.startTime`` (at least 1);
    None for other owners, one without a start or suspended, and one already past its deadline."""
    where = _DEADLINES.get(str(owner.get("kind")))
    if where is None:
        return None
    path, fields = where
    started = (owner.get("status") or {}).get("startTime")  # set by its controller while it runs
    spec = owner.get("spec") or {}
    policy = spec.get("runPolicy") or {} if "runPolicy" in fields else spec
    if not isinstance(started, str) or policy.get("suspend"):
        return None  # not running as its controller sees it: its pods are deleted instead
    start = bodies.timestamp(started)
    if start is None:
        return None
    seconds = max(1, int(now - start))
    existing = policy.get("activeDeadlineSeconds")
    if isinstance(existing, int) and 0 < existing <= seconds:
        return None  # its controller ends it on its own
    patch: Body = {"activeDeadlineSeconds": seconds}
    for name in reversed(fields):
        patch = {name: patch}
    meta = owner.get("metadata") or {}
    return applier.patch(path.format(namespace=meta.get("namespace"), name=meta.get("name")), patch,
                         purpose="runtime limit")  # fmt: skip


def _pod_key(pod: Pod) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _job_key(pod: Pod) -> str:
    meta = pod["metadata"]
    owner = labels(pod).get(bodies.JOB_LABEL)
    return f"{meta['namespace']}/{owner}" if owner else f"{meta['namespace']}/pods/{meta['name']}"


def _delete_pod(pod: Pod, grace: int) -> Write:
    meta = pod["metadata"]
    return applier.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", grace_seconds=grace)


def _finalizers(path: str, meta: ObjectMeta, finalizers: list[str]) -> Write:
    """Sets the finalizers, guarded by resourceVersion so a concurrent change is not overwritten."""
    return applier.patch(path, {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}})
