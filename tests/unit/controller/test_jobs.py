"""The TrainingJob controller's plans: pods, phases, restarts, preemption, deletion."""

from leitstand.controller import jobs, scheduler
from leitstand.core import model
from leitstand.kube import bodies, resources
from leitstand.kube.objects import Body
from tests import templates

NOW = 1_800_000_000.0
SETTINGS = bodies.Settings()


def a_job(replicas: int = 2, *, status: Body | None = None, finalized: bool = True, backoff: int = 1) -> Body:
    return {
        "apiVersion": "leitstand.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": "llm",
            "namespace": "soofi",
            "uid": "uid-1",
            "generation": 1,
            "creationTimestamp": "2027-01-15T08:00:00Z",
            "resourceVersion": "7",
            "finalizers": [jobs.FINALIZER] if finalized else [],
        },
        "spec": {
            "replicas": replicas,
            "gpusPerReplica": 8,
            "gpuType": "b200",
            "backoffLimit": backoff,
            "template": templates.pod(
                image="nemo",
                env=[{"name": "NCCL_DEBUG", "value": "WARN"}],
                cpu="200",
                memory="1800Gi",
                annotations={"leitstand.dev/sim-duration": "2h"},
            ),
        },
        "status": status or {},
    }


def a_pod(rank: int, phase: str = "Pending", node: str | None = None, deleting: bool = False) -> Body:
    meta: Body = {
        "name": f"llm-{rank}",
        "namespace": "soofi",
        "labels": {bodies.JOB_LABEL: "llm", bodies.REPLICA_LABEL: str(rank)},
    }
    if deleting:
        meta["deletionTimestamp"] = "2027-01-15T09:00:00Z"
    spec: Body = {"nodeName": node} if node else {}
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def plan(job: Body, pods: dict[int, Body], verdict: jobs.Verdict | None = None) -> jobs.Plan:
    return jobs.plan(
        job, pods, verdict or jobs.Verdict(queue="soofi"), now=NOW, eviction_grace_seconds=30,
        settings=SETTINGS, nodes={}, service_exists=True,
    )  # fmt: skip


def test_a_new_job_gets_its_pods_with_the_torchrun_environment_and_a_finalizer() -> None:
    first = plan(a_job(finalized=False), {})
    assert first.add_finalizer
    assert first.create == []  # no pods before the finalizer: a job deleted now leaves none behind
    result = plan(a_job(), {})
    assert not result.add_finalizer
    assert [pod["metadata"]["name"] for pod in result.create] == ["llm-0", "llm-1"]
    pod = result.create[1]
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env == {
        "NCCL_DEBUG": "WARN",
        "WORLD_SIZE": "2",
        "RANK": "1",
        "MASTER_ADDR": "llm-0.llm.soofi.svc",
        "MASTER_PORT": "29500",
        "PET_NNODES": "2",
        "PET_NODE_RANK": "1",
        "PET_MASTER_ADDR": "llm-0.llm.soofi.svc",
        "PET_MASTER_PORT": "29500",
    }
    assert set(env) - {"NCCL_DEBUG"} <= set(bodies.OWNED_ENV)
    assert pod["spec"]["schedulerName"] == "leitstand"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("llm-1", "llm")
    assert pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "200", "memory": "1800Gi", "nvidia.com/gpu": "8"},
        "limits": {"nvidia.com/gpu": "8"},
    }
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pod["metadata"]["annotations"] == {"leitstand.dev/sim-duration": "2h"}
    assert result.status is not None
    assert result.status["phase"] == "Queued"
    assert [e.reason for e in result.events] == ["Queued"]


def test_a_waiting_job_shows_the_schedulers_reason_and_position() -> None:
    explanation = model.Explanation(
        model.JobKey("soofi/llm"),
        model.Reason.TOPOLOGY_UNSATISFIABLE,
        "needs 2 x 8 b200 in one leaf",
        model.QueueName("soofi"),
        3,
    )
    result = plan(
        a_job(status={"phase": "Queued", "reason": "Pending"}),
        {0: a_pod(0), 1: a_pod(1)},
        jobs.Verdict(explanation, queue="soofi"),
    )
    assert result.create == []
    assert result.status is not None
    assert (result.status["reason"], result.status["queuePosition"]) == ("TopologyUnsatisfiable", 3)
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "TopologyUnsatisfiable")]


def test_all_replicas_running_make_the_job_running_with_its_placement() -> None:
    pods = {0: a_pod(0, "Running", "b200-0001"), 1: a_pod(1, "Running", "b200-0002")}
    result = plan(a_job(status={"phase": "Queued"}), pods)
    assert result.status is not None
    assert result.status["phase"] == "Running"
    assert result.status["placement"]["nodes"] == ["b200-0001", "b200-0002"]
    assert result.status["startedAt"] == jobs.rfc3339(NOW)
    assert [e.reason for e in result.events] == ["Running"]


def test_a_started_job_drops_its_queue_position_and_its_status_is_written_once() -> None:
    explanation = model.Explanation(
        model.JobKey("soofi/llm"), model.Reason.INSUFFICIENT_CAPACITY, "needs 16 b200", model.QueueName("soofi"), 3
    )
    queued = plan(a_job(), {0: a_pod(0), 1: a_pod(1)}, jobs.Verdict(explanation, queue="soofi")).status
    assert queued is not None
    assert queued["queuePosition"] == 3
    pods = {0: a_pod(0, "Running", "n1"), 1: a_pod(1, "Running", "n2")}
    running = plan(a_job(status=queued), pods).status  # the whole status, as the API server then stores it
    assert running is not None
    assert running["phase"] == "Running"
    assert "queuePosition" not in running
    assert plan(a_job(status=running), pods).status is None  # nothing changed: nothing to write


def test_a_waiting_job_shows_when_it_is_expected_to_start_and_drops_it_once_running() -> None:
    explanation = model.Explanation(
        model.JobKey("soofi/llm"), model.Reason.INSUFFICIENT_CAPACITY, "reserved 2 nodes", model.QueueName("soofi"), 1
    )
    estimate = model.Planned(NOW + 3 * 3600 + 10, (model.NodeName("n1"), model.NodeName("n2")))
    verdict = jobs.Verdict(explanation, queue="soofi", estimate=estimate)
    queued = plan(a_job(), {0: a_pod(0), 1: a_pod(1)}, verdict).status
    assert queued is not None
    assert queued["estimatedStartTime"] == jobs.rfc3339(NOW + 3 * 3600 + 60)  # to the minute, up
    # a new plan a little later keeps what is shown; one more than a tenth of the wait away moves it
    slightly = jobs.Verdict(explanation, queue="soofi", estimate=model.Planned(NOW + 3 * 3600 + 900))
    assert plan(a_job(status=queued), {0: a_pod(0), 1: a_pod(1)}, slightly).status is None
    later = jobs.Verdict(explanation, queue="soofi", estimate=model.Planned(NOW + 4 * 3600))
    moved = plan(a_job(status=queued), {0: a_pod(0), 1: a_pod(1)}, later).status
    assert moved is not None
    assert moved["estimatedStartTime"] == jobs.rfc3339(NOW + 4 * 3600)
    unknown = jobs.Verdict(explanation, queue="soofi", estimate=model.Planned(float("inf")))
    assert "estimatedStartTime" not in (plan(a_job(), {0: a_pod(0), 1: a_pod(1)}, unknown).status or {})
    pods = {0: a_pod(0, "Running", "n1"), 1: a_pod(1, "Running", "n2")}
    running = plan(a_job(status=queued), pods).status
    assert running is not None
    assert "estimatedStartTime" not in running


def test_the_status_is_what_the_crd_model_writes() -> None:
    status = plan(a_job(), {0: a_pod(0), 1: a_pod(1)}).status
    assert status is not None
    assert (
        resources.TrainingJobStatus.model_validate(status).model_dump(mode="json", by_alias=True, exclude_none=True)
        == status
    )
    assert {c["type"] for c in status["conditions"]} == {"Scheduled", "Running", "Finished"}


def test_all_replicas_succeeded_make_the_job_succeeded() -> None:
    pods = {0: a_pod(0, "Succeeded", "n1"), 1: a_pod(1, "Succeeded", "n2")}
    result = plan(a_job(status={"phase": "Running"}), pods)
    assert result.status is not None
    assert result.status["phase"] == "Succeeded"
    assert result.status["finishedAt"] == jobs.rfc3339(NOW)


def test_a_failed_replica_restarts_the_whole_gang_then_the_job_fails() -> None:
    pods = {0: a_pod(0, "Failed", "n1"), 1: a_pod(1, "Running", "n2")}
    first = plan(a_job(status={"phase": "Running", "restarts": 0}), pods)
    assert sorted(first.delete) == [("llm-0", 0), ("llm-1", 0)]
    assert first.status is not None
    assert (first.status["phase"], first.status["reason"], first.status["restarts"]) == ("Queued", "Restarting", 1)
    spent = plan(a_job(status={"phase": "Running", "restarts": 1}), pods)
    assert spent.delete == [("llm-1", 0)]  # the failed pod stays for its logs
    assert spent.status is not None
    assert (spent.status["phase"], spent.status["reason"]) == ("Failed", "BackoffLimitExceeded")


RECLAIMED = model.Eviction(
    model.JobKey("soofi/llm"), model.Reason.RECLAIMED, model.JobKey("acme/x"), "queue acme is below its fair share"
)


def conditions(result: jobs.Plan) -> dict[str, tuple[str, str, str]]:
    assert result.status is not None
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in result.status["conditions"]}


def test_an_evicted_job_is_told_then_preempted_with_its_grace_period_and_requeued_later() -> None:
    pods = {0: a_pod(0, "Running", "n1"), 1: a_pod(1, "Running", "n2")}
    verdict = jobs.Verdict(evicted=RECLAIMED, queue="soofi", grace_seconds=120)
    evicted = plan(a_job(status={"phase": "Running"}), pods, verdict)
    stamp = jobs.rfc3339(NOW)
    assert evicted.annotate == [
        ("llm-0", {"leitstand.dev/preempt-at": stamp}),
        ("llm-1", {"leitstand.dev/preempt-at": stamp}),
    ]
    assert sorted(evicted.delete) == [("llm-0", 120), ("llm-1", 120)]
    assert evicted.status is not None
    assert evicted.status["phase"] == "Preempted"
    message = "Reclaimed for acme/x: queue acme is below its fair share"
    assert conditions(evicted)["Preempting"] == ("True", "Reclaimed", message)
    assert [(e.reason, e.message) for e in evicted.events] == [
        ("Preempting", f"{message}; its pods stop now, with 120 s to save their work")
    ]
    deleting = {0: a_pod(0, "Running", "n1", deleting=True)}
    waiting = plan(a_job(status=evicted.status), deleting)
    assert waiting.create == []
    assert waiting.status is None or waiting.status["phase"] == "Preempted"
    requeued = plan(a_job(status=evicted.status), {})
    assert [pod["metadata"]["name"] for pod in requeued.create] == ["llm-0", "llm-1"]
    assert requeued.status is None  # Preempted until its new pods exist
    why = model.Explanation(
        model.JobKey("soofi/llm"), model.Reason.WAITING_FOR_RECLAIM, "soon", model.QueueName("soofi"), 1
    )
    queued = plan(
        a_job(status=evicted.status), {0: a_pod(0), 1: a_pod(1)}, jobs.Verdict(explanation=why, queue="soofi")
    )
    assert queued.status is not None
    assert queued.status["phase"] == "Queued"
    assert conditions(queued)["Preempting"] == ("False", "NotPreempting", "")


def test_a_queue_with_a_notice_lets_the_job_run_until_its_preempt_at_then_deletes_its_pods() -> None:
    pods = {0: a_pod(0, "Running", "n1"), 1: a_pod(1, "Running", "n2")}
    verdict = jobs.Verdict(evicted=RECLAIMED, queue="soofi", grace_seconds=60, stops_at=NOW + 300)
    told = plan(a_job(status={"phase": "Running"}), pods, verdict)
    at = jobs.rfc3339(NOW + 300)
    assert [notes for _pod, notes in told.annotate] == [{"leitstand.dev/preempt-at": at}] * 2
    assert told.delete == []
    assert told.status is not None
    assert told.status["phase"] == "Running"
    assert conditions(told)["Preempting"][0] == "True"
    assert [e.message.endswith(f"stop at {at}, with 60 s to save their work") for e in told.events] == [True]
    for pod in pods.values():
        pod["metadata"]["annotations"] = {"leitstand.dev/preempt-at": at}
    noticed = jobs.Verdict(queue="soofi", grace_seconds=60)  # the core no longer evicts it
    during = jobs.plan(a_job(status=told.status), pods, noticed, now=NOW + 200, eviction_grace_seconds=30,
                       settings=SETTINGS, nodes={}, service_exists=True)  # fmt: skip
    assert (during.delete, during.annotate, during.events) == ([], [], [])
    saving = a_job(status=told.status)  # the job reports a checkpoint after it was told: it stops at once
    saving["metadata"]["annotations"] = {"leitstand.dev/last-checkpoint": jobs.rfc3339(NOW + 150)}
    saved = jobs.plan(saving, pods, noticed, now=NOW + 200, eviction_grace_seconds=30,
                      settings=SETTINGS, nodes={}, service_exists=True)  # fmt: skip
    assert sorted(saved.delete) == [("llm-0", 60), ("llm-1", 60)]
    saving["metadata"]["annotations"] = {"leitstand.dev/last-checkpoint": jobs.rfc3339(NOW - 150)}  # before: no
    assert jobs.plan(saving, pods, noticed, now=NOW + 200, eviction_grace_seconds=30,
                     settings=SETTINGS, nodes={}, service_exists=True).delete == []  # fmt: skip
    after = jobs.plan(a_job(status=told.status), pods, noticed, now=NOW + 301, eviction_grace_seconds=30,
                      settings=SETTINGS, nodes={}, service_exists=True)  # fmt: skip
    assert sorted(after.delete) == [("llm-0", 60), ("llm-1", 60)]
    assert after.status is not None
    assert after.status["phase"] == "Preempted"
    assert [e.reason for e in after.events] == ["Preempted"]


def test_a_second_preemption_gets_its_whole_notice_though_the_job_saved_since_the_first() -> None:
    earlier = jobs.rfc3339(NOW - 3600)
    status = {"phase": "Running", "conditions": [{"type": "Preempting", "status": "False", "reason": "NotPreempting",
              "message": "", "lastTransitionTime": earlier}]}  # fmt: skip
    job = a_job(status=status)
    job["metadata"]["annotations"] = {"leitstand.dev/last-checkpoint": jobs.rfc3339(NOW - 600)}
    pods = {0: a_pod(0, "Running", "n1"), 1: a_pod(1, "Running", "n2")}
    told = plan(job, pods, jobs.Verdict(evicted=RECLAIMED, queue="soofi", grace_seconds=60, stops_at=NOW + 300))
    assert len(told.annotate) == 2
    assert told.delete == []  # the save it reported before this preemption does not cut its notice short
    assert conditions(told)["Preempting"][:2] == ("True", "Reclaimed")


def test_a_job_that_succeeds_during_its_notice_succeeded() -> None:
    at = jobs.rfc3339(NOW - 1)
    pods = {rank: a_pod(rank, "Succeeded", f"n{rank}") for rank in (0, 1)}
    for pod in pods.values():
        pod["metadata"]["annotations"] = {"leitstand.dev/preempt-at": at}
    told = {"phase": "Running", "conditions": [{"type": "Preempting", "status": "True", "reason": "Reclaimed",
            "message": "Reclaimed for acme/x", "lastTransitionTime": at}]}  # fmt: skip
    result = plan(a_job(status=told), pods)
    assert result.status is not None
    assert result.status["phase"] == "Succeeded"
    assert result.delete == []
    assert conditions(result)["Preempting"] == ("False", "NotPreempting", "")


def test_a_template_grace_period_reaches_the_pods() -> None:
    job = a_job()
    job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 600
    assert {pod["spec"]["terminationGracePeriodSeconds"] for pod in plan(job, {}).create} == {600}
    assert "terminationGracePeriodSeconds" not in plan(a_job(), {}).create[0]["spec"]  # the API server's 30


def test_deleting_a_job_deletes_its_pods_then_lets_it_go() -> None:
    job = a_job(status={"phase": "Running"})
    job["metadata"]["deletionTimestamp"] = "2027-01-15T10:00:00Z"
    busy = plan(job, {0: a_pod(0, "Running", "n1")})
    assert busy.delete == [("llm-0", 0)]
    assert not busy.remove_finalizer
    assert plan(job, {}).remove_finalizer


def test_an_unchanged_job_is_not_patched() -> None:
    pods = {0: a_pod(0, "Running", "n1"), 1: a_pod(1, "Running", "n2")}
    first = plan(a_job(status={"phase": "Queued"}), pods)
    assert first.status is not None
    again = plan(a_job(status=first.status), pods)
    assert again.status is None
    assert again.events == []


def test_pods_of_a_same_named_job_in_another_namespace_are_not_its_own() -> None:
    theirs = a_pod(0, "Failed", "n9")
    theirs["metadata"]["namespace"] = "acme"
    mine = a_pod(0, "Running", "n1")
    found = jobs.pods_by_rank(a_job(), {"acme/llm-0": theirs, "soofi/llm-0": mine})
    assert found == {0: mine}


def test_tolerations_reach_every_pod_and_the_core() -> None:
    job = a_job()
    job["spec"]["template"]["spec"]["tolerations"] = [
        {"key": "dedicated", "value": "soofi", "effect": "NoSchedule"},
        {"key": "maintenance", "operator": "Exists"},
    ]
    created = plan(job, {}).create
    assert created[0]["spec"]["tolerations"] == [
        {"key": "dedicated", "value": "soofi", "effect": "NoSchedule"},
        {"key": "maintenance", "operator": "Exists"},
    ]
    assert "tolerations" not in plan(a_job(), {}).create[0]["spec"]
    pods = {rank: {**pod, "metadata": {**pod["metadata"], "uid": f"p{rank}"}} for rank, pod in enumerate(created)}
    core_job = bodies.training_job(job, pods)
    assert core_job is not None
    assert core_job.tolerations == (("dedicated", "Equal", "soofi", "NoSchedule"), ("maintenance", "Exists", "", ""))
    plain = bodies.pod_job({"metadata": {"name": "nb", "namespace": "t"}, "spec": {"tolerations": [
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}})  # fmt: skip
    assert plain.tolerations == (("gpu", "Exists", "", "NoSchedule"),)


def test_only_taints_that_keep_pods_away_reach_the_core() -> None:
    node = {"metadata": {"name": "n1", "labels": {}}, "spec": {"taints": [
        {"key": "a", "value": "1", "effect": "NoSchedule"},
        {"key": "b", "effect": "PreferNoSchedule"},
        {"key": "c", "effect": "NoExecute"},
    ]}, "status": {"allocatable": {"nvidia.com/gpu": "8"}}}  # fmt: skip
    assert bodies.to_node(node, (0, 0, 0), SETTINGS).taints == (("a", "1", "NoSchedule"), ("c", "", "NoExecute"))


def test_a_job_past_its_runtime_limit_ends_failed_and_its_pods_go() -> None:
    pods = {0: a_pod(0, "Running", "n1"), 1: a_pod(1, "Running", "n2")}
    started = {"phase": "Running", "startedAt": jobs.rfc3339(NOW - 7200)}
    within = plan(a_job(status=started), pods, jobs.Verdict(queue="soofi", runtime_limit=7201))
    assert within.delete == []
    assert within.status is not None
    assert within.status["phase"] == "Running"
    over = plan(a_job(status=started), pods, jobs.Verdict(queue="soofi", runtime_limit=7200))
    assert over.status is not None
    assert (over.status["phase"], over.status["reason"]) == ("Failed", "RuntimeLimitExceeded")
    assert over.status["message"] == "ran to its runtime limit of 2h; its pods were deleted"
    assert over.status["finishedAt"] == jobs.rfc3339(NOW)
    assert sorted(over.delete) == [("llm-0", 0), ("llm-1", 0)]
    assert [(e.type, e.reason) for e in over.events] == [("Warning", "RuntimeLimitExceeded")]
    unbounded = plan(a_job(status=started), pods, jobs.Verdict(queue="soofi"))
    assert unbounded.delete == []
    done = {0: a_pod(0, "Succeeded", "n1"), 1: a_pod(1, "Succeeded", "n2")}  # finished in time, seen late
    finished = plan(a_job(status=started), done, jobs.Verdict(queue="soofi", runtime_limit=3600))
    assert finished.status is not None
    assert finished.status["phase"] == "Succeeded"


def test_a_job_asking_more_than_its_queue_allows_ends_failed_before_it_runs() -> None:
    explanation = model.Explanation(
        model.JobKey("soofi/llm"), model.Reason.RUNTIME_LIMIT_TOO_LONG, "runtimeLimit 96h is above the maximum",
        model.QueueName("soofi"), None,
    )  # fmt: skip
    result = plan(
        a_job(status={"phase": "Queued"}), {0: a_pod(0), 1: a_pod(1)}, jobs.Verdict(explanation, queue="soofi")
    )
    assert result.status is not None
    assert (result.status["phase"], result.status["reason"]) == ("Failed", "RuntimeLimitTooLong")
    assert sorted(result.delete) == [("llm-0", 0), ("llm-1", 0)]
    assert result.create == []
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "RuntimeLimitTooLong")]


def test_a_preempted_jobs_grace_is_its_templates_capped_on_its_queue_path_and_the_nearest_notice_wins() -> None:
    def quota(name: str, parent: str | None = None, **spec: int) -> Body:
        return {"metadata": {"name": name}, "spec": {**({"parent": parent} if parent else {}), **spec}}

    quotas = {
        "root": quota("root", maxPreemptionGraceSeconds=300, preemptionNoticeSeconds=60),
        "soofi": quota("soofi", "root", preemptionNoticeSeconds=600),
        "lab": quota("lab", "root"),
    }
    queues = {model.QueueName(name): q for name, body in quotas.items() if (q := bodies.to_queue(body)) is not None}
    job = a_job()
    spec = bodies.job_spec(job)
    assert scheduler.preemption_terms(spec, "soofi", queues, 30) == (30, 600)  # the operator's default grace
    job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 900
    job["metadata"]["generation"] = 2
    spec = bodies.job_spec(job)
    assert scheduler.preemption_terms(spec, "soofi", queues, 30) == (300, 600)  # capped by root
    assert scheduler.preemption_terms(spec, "lab", queues, 30) == (300, 60)  # root's notice
    assert scheduler.preemption_terms(spec, None, queues, 30) == (900, 0)


def test_a_full_template_reaches_every_pod_with_what_leitstand_owns_added() -> None:
    job = a_job()
    job["spec"]["template"] = {
        "metadata": {"labels": {"team": "soofi"}, "annotations": {"note": "x"}},
        "spec": {
            "initContainers": [{"name": "fetch", "image": "busybox", "command": ["sh", "-c", "true"]}],
            "containers": [
                {"name": "trainer", "image": "nemo", "resources": {"requests": {"cpu": "96", "rdma/ib": "8"},
                                                                   "limits": {"rdma/ib": "8"}},
                 "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}]},
                {"name": "logger", "image": "fluent-bit"},
            ],
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Gi"}}],
            "imagePullSecrets": [{"name": "ngc"}],
            "securityContext": {"runAsNonRoot": True},
        },
    }  # fmt: skip
    pod = plan(job, {}).create[0]
    spec = pod["spec"]
    assert spec["volumes"] == job["spec"]["template"]["spec"]["volumes"]
    assert spec["imagePullSecrets"] == [{"name": "ngc"}]
    assert spec["securityContext"] == {"runAsNonRoot": True}
    trainer, logger = spec["containers"]
    assert trainer["resources"] == {"requests": {"cpu": "96", "rdma/ib": "8", "nvidia.com/gpu": "8"},
                                    "limits": {"rdma/ib": "8", "nvidia.com/gpu": "8"}}  # fmt: skip
    assert "resources" not in logger  # the GPUs go to the first container only
    for container in [*spec["initContainers"], trainer, logger]:
        assert {e["name"]: e["value"] for e in container["env"]}["RANK"] == "0"
    assert pod["metadata"]["labels"] == {"team": "soofi", bodies.JOB_LABEL: "llm", bodies.REPLICA_LABEL: "0"}
    assert pod["metadata"]["annotations"] == {"note": "x"}
    assert "env" not in job["spec"]["template"]["spec"]["containers"][1]  # the job's own template is untouched
    core = bodies.training_job(job, {r: {**p, "metadata": {**p["metadata"], "uid": str(r)}}
                                     for r, p in enumerate(plan(job, {}).create)})  # fmt: skip
    assert core is not None
    assert (core.gpus_per_replica, core.cpu_millis_per_replica) == (8, 96_000)


def test_gpus_the_template_asks_for_must_be_gpus_per_replica() -> None:
    job = a_job()
    trainer = job["spec"]["template"]["spec"]["containers"][0]
    trainer["resources"] = {"limits": {"nvidia.com/gpu": "8"}}
    pod = plan(job, {}).create[0]
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "8"}}  # as it asked
    trainer["resources"] = {"limits": {"nvidia.com/gpu": "4"}}
    job["metadata"]["generation"] = 2
    result = plan(job, {})
    assert result.create == []
    assert result.status is not None
    assert (result.status["phase"], result.status["reason"]) == ("Failed", "InvalidTemplate")
    assert "asks for 4 nvidia.com/gpu per replica and gpusPerReplica is 8" in result.status["message"]
    assert [e.reason for e in result.events] == ["InvalidTemplate"]
    assert bodies.training_job(job, {}) is None  # never scheduled


def template_with(**changes: object) -> Body:
    job = a_job()
    job["metadata"]["uid"] = f"uid-{sorted(changes)}"
    template = job["spec"]["template"]
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = template
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[last] = value
    return job


def test_a_template_that_sets_what_leitstand_owns_differently_is_refused_with_a_reason() -> None:
    cases = {
        "schedulerName 'default-scheduler'": template_with(spec__schedulerName="default-scheduler"),
        "restartPolicy 'OnFailure'": template_with(spec__restartPolicy="OnFailure"),
        "sets hostname": template_with(spec__hostname="me"),
        "sets subdomain": template_with(spec__subdomain="us"),
        "label leitstand.dev/replica": template_with(metadata__labels={bodies.REPLICA_LABEL: "3"}),
        "'trainer' sets RANK": template_with(spec__containers__0__env=[{"name": "RANK", "value": "0"}]),
        "asks for 16 nvidia.com/gpu": template_with(
            spec__containers__0__resources={"requests": {"nvidia.com/gpu": "16"}}
        ),
    }
    for expected, job in cases.items():
        problem = bodies.template_problem(bodies.job_spec(job))
        assert expected in (problem or ""), (expected, problem)
    fine = [template_with(spec__schedulerName="leitstand"), template_with(spec__restartPolicy="Never")]
    assert [bodies.template_problem(bodies.job_spec(job)) for job in fine] == [None, None]


def test_pods_the_api_server_refuses_for_good_end_the_job_failed_with_its_words() -> None:
    refusal = '403 Forbidden: pods "llm-0" is forbidden: violates PodSecurity "restricted:latest": privileged'
    result = plan(a_job(status={"phase": "Queued"}), {}, jobs.Verdict(queue="soofi", refused=refusal))
    assert result.create == []
    assert result.status is not None
    assert (result.status["phase"], result.status["reason"]) == ("Failed", "PodRefused")
    assert "violates PodSecurity" in result.status["message"]
    later = plan(a_job(status=result.status), {})
    assert later.create == []
    assert later.status is None


def test_only_refusals_that_come_again_fail_a_job() -> None:
    from leitstand.kube import applier

    create = applier.create("/api/v1/namespaces/t/pods", {"metadata": {"name": "p"}})

    def outcome(status: int | None, reason: str) -> applier.Outcome:
        return applier.Outcome(create, ok=False, reason=reason, status=status)

    assert scheduler.refused_for_good(outcome(422, "422 Invalid: spec.volumes[0].name: Invalid value"))
    assert scheduler.refused_for_good(outcome(403, '403 Forbidden: violates PodSecurity "restricted:latest"'))
    assert not scheduler.refused_for_good(outcome(403, "403 Forbidden: exceeded quota: compute"))
    assert not scheduler.refused_for_good(outcome(500, "500 Internal Server Error"))
    assert not scheduler.refused_for_good(outcome(None, "ClientConnectorError: refused"))


def an_elastic_job(least: int = 2, most: int = 4, *, status: Body | None = None) -> Body:
    job = a_job(most, status=status)
    job["spec"]["minReplicas"] = least
    return job


def test_an_elastic_jobs_pods_get_torchruns_elastic_rendezvous_and_every_rank_is_created() -> None:
    result = plan(an_elastic_job(), {})
    assert [pod["metadata"]["name"] for pod in result.create] == ["llm-0", "llm-1", "llm-2", "llm-3"]
    env = {e["name"]: e["value"] for e in result.create[3]["spec"]["containers"][0]["env"]}
    assert env["PET_NNODES"] == "2:4"
    assert env["PET_RDZV_BACKEND"] == "c10d"
    assert env["PET_RDZV_ENDPOINT"] == "llm-0.llm.soofi.svc:29500"
    assert env["PET_RDZV_ID"] == "uid-1"
    assert "PET_NODE_RANK" not in env  # torchrun gives ranks on every rendezvous
    assert set(env) - {"NCCL_DEBUG"} <= set(bodies.OWNED_ENV)
    assert result.status is not None
    assert result.status["replicas"] == {"current": 0, "min": 2, "max": 4}


def test_an_elastic_job_runs_once_its_gang_runs_and_says_how_many_replicas_it_has() -> None:
    pods = {0: a_pod(0, "Running", "n1"), 1: a_pod(1, "Running", "n2"), 2: a_pod(2), 3: a_pod(3)}
    result = plan(an_elastic_job(), pods)
    assert result.status is not None
    assert result.status["phase"] == "Running"
    assert result.status["message"] == "2 of at most 4 replicas running on 2 nodes"
    assert result.status["replicas"] == {"current": 2, "min": 2, "max": 4}
    assert result.create == []
    grown = {**pods, 2: a_pod(2, "Running", "n3")}
    again = plan(an_elastic_job(status=result.status), grown)
    assert again.status is not None
    assert again.status["replicas"]["current"] == 3
    assert [(e.reason, e.message) for e in again.events] == [("Scaled", "grew from 2 to 3 replicas")]


def test_an_elastic_job_shrinks_by_the_ranks_it_gives_back_and_makes_their_pods_again_once_gone() -> None:
    pods = {r: a_pod(r, "Running", f"n{r}") for r in range(4)}
    running = plan(an_elastic_job(), pods).status
    eviction = model.Eviction(
        model.JobKey("soofi/llm"), model.Reason.RECLAIMED, model.JobKey("helix/train"),
        "2 replicas above its minimum: reclaimed by queue helix", ranks=(3, 2),
    )  # fmt: skip
    result = plan(an_elastic_job(status=running), pods, jobs.Verdict(queue="soofi", shrunk=(eviction,)))
    assert result.delete == [("llm-2", 30), ("llm-3", 30)]
    assert result.status is not None
    assert result.status["phase"] == "Running"  # the gang runs on
    assert result.status["replicas"]["current"] == 2
    assert [e.reason for e in result.events] == ["Shrinking", "Scaled"]
    assert result.create == []
    # while the old pods terminate nothing is made; once they are gone, new ones wait for room
    leaving = {**pods, 2: a_pod(2, "Running", "n2", deleting=True), 3: a_pod(3, "Running", "n3", deleting=True)}
    assert plan(an_elastic_job(status=result.status), leaving).create == []
    gone = {0: pods[0], 1: pods[1]}
    assert [p["metadata"]["name"] for p in plan(an_elastic_job(status=result.status), gone).create] == [
        "llm-2",
        "llm-3",
    ]


def test_the_core_sees_an_elastic_job_as_its_gang_with_absent_ranks_left_out() -> None:
    pods = {0: a_pod(0, "Running", "n1"), 1: a_pod(1, "Running", "n2"), 3: a_pod(3)}
    job = bodies.training_job(an_elastic_job(), pods)
    assert job is not None
    assert (job.min_replicas, job.replicas, job.gang) == (2, 4, 2)
    assert job.placement == ("n1", "n2", None, None)
    assert job.running
    assert job.leaving == (2,)  # its pod is being made again: not placed this cycle
    waiting = bodies.training_job(an_elastic_job(), {0: a_pod(0), 1: a_pod(1)})
    assert waiting is not None  # the gang's pods are there: it may be scheduled before the rest exist
    assert waiting.leaving == (2, 3)
    assert bodies.training_job(an_elastic_job(), {0: a_pod(0)}) is None


def test_a_job_that_says_it_is_movable_reaches_the_core_as_movable() -> None:
    body = a_job()
    pods = {0: a_pod(0), 1: a_pod(1)}
    plain = bodies.training_job(body, pods)
    assert plain is not None
    assert not plain.movable
    body["metadata"]["annotations"] = {bodies.MOVABLE_ANNOTATION: "true"}
    movable = bodies.training_job(body, pods)
    assert movable is not None
    assert movable.movable
