"""Raw bodies to the core's snapshot: nominations, terminating pods and foreign pods (no cluster needed)."""

from typing import Any

from leitstand.core import model
from leitstand.kube import bodies
from leitstand.kube.objects import Body
from tests import templates

SETTINGS = bodies.Settings()


def a_node(name: str, gpus: int = 8) -> Body:
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "NVIDIA-B200"}},
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "224", "memory": "2048Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def a_pod(name: str, *, node: str | None = None, nominated: str | None = None, scheduler: str = "leitstand",
          job: str | None = None, rank: int = 0, deleting: bool = False, gpus: int = 8) -> Body:  # fmt: skip
    meta: Body = {"name": name, "namespace": "acme", "creationTimestamp": "2027-01-15T08:00:00Z"}
    if job is not None:
        meta["labels"] = {bodies.JOB_LABEL: job, bodies.REPLICA_LABEL: str(rank)}
    if deleting:
        meta["deletionTimestamp"] = "2027-01-15T09:00:00Z"
    spec: Body = {
        "schedulerName": scheduler,
        "containers": [{"resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}],
    }
    if node:
        spec["nodeName"] = node
    status: Body = {"phase": "Running" if node else "Pending"}
    if nominated:
        status["nominatedNodeName"] = nominated
    return {"metadata": meta, "spec": spec, "status": status}


def parts(built: bodies.Built) -> tuple[model.Snapshot, dict[model.JobKey, Body], dict[model.JobKey, dict[int, Body]]]:
    return built.snapshot, dict(built.pod_of_job), dict(built.pods_of_gang)  # type: ignore[arg-type]


def a_training_job(replicas: int = 2) -> Body:
    return {
        "metadata": {"name": "llm", "namespace": "acme", "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"replicas": replicas, "gpusPerReplica": 8, "gpuType": "b200", "template": templates.pod(image="nemo")},
        "status": {},
    }


def build(pods: list[Body], jobs: list[Body] = ()) -> dict[str, model.Job]:  # type: ignore[assignment]
    snap, _pod_of_job, _gang = parts(bodies.build([a_node("n1"), a_node("n2")], [], pods, SETTINGS, jobs))
    return {job.key: job for job in snap.jobs}


def test_a_waiting_plain_pod_reads_its_nomination_and_a_bound_one_does_not() -> None:
    jobs = build([a_pod("waits", nominated="n1"), a_pod("runs", node="n2", nominated="n1")])
    assert jobs["acme/pods/waits"].nominated == ("n1",)
    assert jobs["acme/pods/runs"].nominated == ()


def test_a_waiting_gang_is_nominated_only_when_every_replica_is() -> None:
    both = build([a_pod("llm-0", job="llm", rank=0, nominated="n1"), a_pod("llm-1", job="llm", rank=1, nominated="n2")],
                 [a_training_job()])  # fmt: skip
    assert both["acme/llm"].nominated == ("n1", "n2")
    one = build([a_pod("llm-0", job="llm", rank=0, nominated="n1"), a_pod("llm-1", job="llm", rank=1)],
                [a_training_job()])  # fmt: skip
    assert one["acme/llm"].nominated == ()


def test_a_deleted_pod_on_a_node_is_a_terminating_job_that_holds_it() -> None:
    jobs = build([a_pod("old", node="n1", deleting=True)])
    assert jobs["acme/terminating/old"].terminating
    assert jobs["acme/terminating/old"].placement == ("n1",)


def test_pods_of_other_schedulers_shrink_their_node() -> None:
    snap, _p, _g = parts(
        bodies.build([a_node("n1")], [], [a_pod("theirs", node="n1", scheduler="default", gpus=3)], SETTINGS)
    )
    assert snap.nodes[0].gpus == 5
    assert snap.jobs == ()


def test_a_jobs_spec_is_parsed_once_per_version() -> None:
    spec = {"replicas": 2, "gpusPerReplica": 8, "template": templates.pod(image="pytorch")}
    body = {"metadata": {"name": "llm", "namespace": "acme", "uid": "u1", "generation": 1}, "spec": spec}
    first = bodies.job_spec(body)
    assert bodies.job_spec({**body, "status": {"phase": "Running"}}) is first  # a status change: the same spec
    changed = {**body, "metadata": {**body["metadata"], "generation": 2}, "spec": {**spec, "replicas": 4}}
    assert bodies.job_spec(changed).replicas == 4
    look_alike = {**body, "spec": {**spec, "replicas": 3}}  # the same uid and generation, another spec object
    assert bodies.job_spec(look_alike).replicas == 3


def test_taints_that_keep_pods_away_are_read_and_preferences_are_not() -> None:
    node = a_node("n1")
    node["spec"] = {
        "taints": [
            {"key": "nvidia.com/gpu", "effect": "NoSchedule"},
            {"key": "maintenance", "value": "soon", "effect": "PreferNoSchedule"},
            {"key": "drain", "value": "now", "effect": "NoExecute"},
        ]
    }
    snap, _p, _g = parts(bodies.build([node], [], [], SETTINGS))
    assert snap.nodes[0].taints == (("drain", "now", "NoExecute"), ("nvidia.com/gpu", "", "NoSchedule"))


def test_a_cordoned_node_and_a_not_ready_node_are_not_ready() -> None:
    cordoned, silent, fine = a_node("cordoned"), a_node("silent"), a_node("fine")
    cordoned["spec"] = {"unschedulable": True}
    silent["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
    snap, _p, _g = parts(bodies.build([cordoned, silent, fine], [], [], SETTINGS))
    assert {node.name: node.ready for node in snap.nodes} == {"cordoned": False, "silent": False, "fine": True}


def test_finished_foreign_pods_free_their_node_and_limits_stand_in_for_gpu_requests() -> None:
    done = a_pod("done", node="n1", scheduler="default", gpus=8)
    done["status"]["phase"] = "Succeeded"
    limited = a_pod("limited", node="n1", scheduler="default")
    limited["spec"]["containers"] = [
        {"resources": {"limits": {"nvidia.com/gpu": "2"}, "requests": {"cpu": "500m", "memory": "1Gi"}}}
    ]
    snap, _p, _g = parts(bodies.build([a_node("n1")], [], [done, limited], SETTINGS))
    node = snap.nodes[0]
    assert (node.gpus, node.cpu_millis, node.memory_bytes) == (6, 224_000 - 500, 2048 * 2**30 - 2**30)


def test_pods_of_a_training_job_that_is_gone_hold_their_nodes() -> None:
    orphan = a_pod("gone-0", node="n1", job="gone", rank=0, gpus=8)
    snap, _p, gangs = parts(bodies.build([a_node("n1")], [], [orphan], SETTINGS, []))
    assert snap.nodes[0].gpus == 0
    assert snap.jobs == ()
    assert gangs == {}


def test_a_gang_pod_being_deleted_is_terminating_and_one_with_a_broken_rank_holds_its_node() -> None:
    deleted = a_pod("llm-0", node="n1", job="llm", rank=0, deleting=True)
    broken = a_pod("llm-x", node="n2", job="llm", gpus=4)
    broken["metadata"]["labels"][bodies.REPLICA_LABEL] = "x"
    snap, _p, gangs = parts(
        bodies.build([a_node("n1"), a_node("n2")], [], [deleted, broken], SETTINGS, [a_training_job()])
    )
    jobs = {job.key: job for job in snap.jobs}
    assert jobs["acme/terminating/llm-0"].terminating
    assert "acme/llm" not in jobs  # neither pod is a replica of the gang: it waits for its pods
    assert gangs == {}
    assert {node.name: node.gpus for node in snap.nodes} == {"n1": 8, "n2": 4}


def test_runtime_limits_come_from_the_job_the_pod_and_the_quota() -> None:
    limited = a_training_job()
    limited["spec"]["runtimeLimit"] = "1h30m"
    annotated = a_pod("annotated")
    annotated["metadata"]["annotations"] = {bodies.RUNTIME_LIMIT_ANNOTATION: "2h"}
    deadline = a_pod("deadline")
    deadline["spec"]["activeDeadlineSeconds"] = 600
    both = a_pod("both")
    both["metadata"]["annotations"] = {bodies.RUNTIME_LIMIT_ANNOTATION: "2h"}
    both["spec"]["activeDeadlineSeconds"] = 60
    garbled = a_pod("garbled")
    garbled["metadata"]["annotations"] = {bodies.RUNTIME_LIMIT_ANNOTATION: "two days"}
    members = [a_pod("llm-0", job="llm", rank=0), a_pod("llm-1", job="llm", rank=1)]
    jobs = build([annotated, deadline, both, garbled, *members], [limited])
    assert jobs["acme/llm"].runtime_limit == 5400
    assert {key: job.runtime_limit for key, job in jobs.items() if "/pods/" in key} == {
        "acme/pods/annotated": 7200, "acme/pods/deadline": 600, "acme/pods/both": 60, "acme/pods/garbled": None,
    }  # fmt: skip
    quota = {"metadata": {"name": "org"}, "spec": {"defaultRuntimeLimit": "24h", "maxRuntimeLimit": "72h"}}
    queue = bodies.to_queue(quota)
    assert queue is not None
    assert (queue.default_runtime_limit, queue.max_runtime_limit) == (86_400, 259_200)


def test_finished_training_jobs_are_what_estimates_learn_from_and_the_rest_are_not() -> None:
    done = a_training_job()
    done["spec"]["runtimeLimit"] = "4h"
    done["status"] = {"phase": "Succeeded", "startedAt": "2027-01-15T08:00:00Z", "finishedAt": "2027-01-15T09:00:00Z"}
    running = a_training_job()
    running["metadata"] = {**running["metadata"], "name": "still"}
    running["status"] = {"phase": "Running", "startedAt": "2027-01-15T08:00:00Z"}
    never = a_training_job()
    never["metadata"] = {**never["metadata"], "name": "never"}
    never["status"] = {"phase": "Failed", "finishedAt": "2027-01-15T09:00:00Z"}  # refused before it started
    snap, _pod_of_job, _gang = parts(bodies.build([a_node("n1")], [], [], SETTINGS, [done, running, never]))
    assert snap.finished == (model.Finished("acme", 3600.0, 4 * 3600.0, bodies.timestamp("2027-01-15T09:00:00Z")),)


def test_checkpoints_come_from_the_spec_and_the_latest_report_on_the_job_or_its_pods() -> None:
    job = a_training_job()
    job["spec"]["checkpoint"] = {"intervalSeconds": 1800}
    job["metadata"]["annotations"] = {bodies.LAST_CHECKPOINT_ANNOTATION: "2027-01-15T10:00:00Z"}
    pods = [a_pod("llm-0", job="llm", rank=0, node="n1"), a_pod("llm-1", job="llm", rank=1, node="n2")]
    pods[1]["metadata"]["annotations"] = {bodies.LAST_CHECKPOINT_ANNOTATION: "2027-01-15T10:05:00Z"}
    gang = build(pods, [job])["acme/llm"]
    assert gang.checkpoint_interval == 1800.0
    assert gang.last_checkpoint == bodies.timestamp("2027-01-15T10:05:00Z")
    job["metadata"]["annotations"] = {bodies.LAST_CHECKPOINT_ANNOTATION: "yesterday at noon"}  # users write these
    del pods[1]["metadata"]["annotations"]
    assert build(pods, [job])["acme/llm"].last_checkpoint is None
    plain = a_pod("solo", node="n1")
    plain["metadata"]["annotations"] = {bodies.LAST_CHECKPOINT_ANNOTATION: "2027-01-15T10:00:00+01:00"}
    assert build([plain])["acme/pods/solo"].last_checkpoint == bodies.timestamp("2027-01-15T09:00:00Z")


def test_a_gang_told_of_its_preemption_is_leaving() -> None:
    pods = [a_pod("llm-0", job="llm", rank=0, node="n1"), a_pod("llm-1", job="llm", rank=1, node="n2")]
    assert not build(pods, [a_training_job()])["acme/llm"].terminating
    pods[0]["metadata"]["annotations"] = {bodies.PREEMPT_AT_ANNOTATION: "2027-01-15T10:00:00Z"}
    gang = build(pods, [a_training_job()])["acme/llm"]
    assert gang.terminating
    assert gang.placement == ("n1", "n2")


def test_a_pod_needs_its_containers_and_sidecars_or_its_biggest_init_container_whichever_is_more() -> None:
    def container(cpu: str, memory: str = "1Gi", **extra: object) -> dict[str, object]:
        return {"name": cpu, "resources": {"requests": {"cpu": cpu, "memory": memory}}, **extra}

    spec = {
        "initContainers": [container("1"), container("500m", restartPolicy="Always"), container("8", "2Gi")],
        "containers": [container("2"), container("3")],
    }
    gpus, cpu, memory = bodies.spec_requests(spec)
    assert gpus == 0
    assert cpu == 8_500  # the last init container with the sidecar started before it
    assert memory == 3 * 2**30  # containers and sidecar: 3 Gi, against the init container's 2 Gi + 1 Gi
    assert bodies.spec_requests({"containers": spec["containers"]}) == (0, 5_000, 2 * 2**30)  # no init: the sum
    only_limits = {"containers": [{"name": "c", "resources": {"limits": {"cpu": "4", "nvidia.com/gpu": "8"}}}]}
    assert bodies.spec_requests(only_limits) == (8, 4_000, 0)  # a limit alone is the request


def owned(name: str, kind: str, owner: str, uid: str = "u1", **annotations: str) -> Body:
    pod = a_pod(name)
    api = "batch/v1" if kind == "Job" else "kubeflow.org/v1"
    pod["metadata"]["ownerReferences"] = [{"apiVersion": api, "kind": kind, "name": owner, "uid": uid,
                                           "controller": True}]  # fmt: skip
    if annotations:
        pod["metadata"]["annotations"] = {f"leitstand.dev/{k.replace('_', '-')}": v for k, v in annotations.items()}
    return pod


def an_owner(kind: str, name: str, uid: str = "u1", **spec: Any) -> tuple[tuple[str, str, str], Body]:
    return (kind, "acme", name), {"metadata": {"name": name, "namespace": "acme", "uid": uid}, "spec": spec}


def test_the_pods_of_a_job_or_a_pytorchjob_are_one_gang_once_all_exist() -> None:
    owners = dict([an_owner("Job", "idx", parallelism=4, completions=4),
                   an_owner("PyTorchJob", "pt", "u2", pytorchReplicaSpecs={"Master": {"replicas": 1},
                                                                         "Worker": {"replicas": 2}})])  # fmt: skip
    three = [owned(f"idx-{i}", "Job", "idx") for i in range(3)]
    pytorch = [owned("pt-master-0", "PyTorchJob", "pt", "u2"), *(owned(f"pt-worker-{i}", "PyTorchJob", "pt", "u2")
                                                                for i in range(2))]  # fmt: skip
    built = bodies.build([a_node("n1")], [], [*three, *pytorch], SETTINGS, [], owners)
    assert [(j.key, j.replicas) for j in built.snapshot.jobs] == [("acme/pytorchjobs/pt", 3)]  # idx waits for 4
    assert [p["metadata"]["name"] for p in built.pods_of_gang[model.JobKey("acme/pytorchjobs/pt")].values()] == [
        "pt-master-0", "pt-worker-0", "pt-worker-1"]  # fmt: skip
    assert built.groups[model.JobKey("acme/pytorchjobs/pt")].owner["kind"] == "PyTorchJob"  # type: ignore[index]
    four = [*three, owned("idx-3", "Job", "idx")]
    built = bodies.build([a_node("n1")], [], four, SETTINGS, [], owners)
    assert [(j.key, j.replicas, j.gpus_per_replica) for j in built.snapshot.jobs] == [("acme/jobs/idx", 4, 8)]
    assert bodies.build([a_node("n1")], [], four, SETTINGS).snapshot.jobs == ()  # owner unseen: they wait


def test_a_jobs_gang_is_what_is_left_of_its_completions_and_a_replicaset_makes_gangs_of_one() -> None:
    key, job = an_owner("Job", "batch", parallelism=4, completions=6)
    job["status"] = {"succeeded": 4}
    pods = [owned(f"batch-{i}", "Job", "batch") for i in range(2)]
    built = bodies.build([a_node("n1")], [], pods, SETTINGS, [], {key: job})
    assert [(j.key, j.replicas) for j in built.snapshot.jobs] == [("acme/jobs/batch", 2)]
    replicas = [owned(f"web-{i}", "ReplicaSet", "web") for i in range(2)]
    for pod in replicas:
        pod["metadata"]["ownerReferences"][0]["apiVersion"] = "apps/v1"
    built = bodies.build([a_node("n1")], [], replicas, SETTINGS, [], {})
    assert sorted(j.key for j in built.snapshot.jobs) == ["acme/pods/web-0", "acme/pods/web-1"]


def test_an_annotated_gang_carries_its_topology_and_priority_and_disagreeing_pods_are_refused() -> None:
    pods = [owned(f"g-{i}", "Other", "x", gang="ring", gang_size="2", topology_required="leaf",
                  priority="build") for i in range(2)]  # fmt: skip
    built = bodies.build([a_node("n1")], [], pods, SETTINGS)
    (gang,) = built.snapshot.jobs
    assert (gang.key, gang.replicas, gang.required_level, gang.priority) == (
        "acme/gangs/ring", 2, "leaf", model.Priority.BUILD)  # fmt: skip
    pods[1]["metadata"]["annotations"]["leitstand.dev/topology-required"] = "spine"
    built = bodies.build([a_node("n1")], [], pods, SETTINGS)
    assert built.snapshot.jobs == ()
    assert built.refused == {"acme/gangs/ring": "pods g-0 and g-1 of one gang disagree on "
                             "leitstand.dev/topology-required: 'leaf' and 'spine'"}  # fmt: skip
    for pod in pods:
        pod["metadata"]["annotations"]["leitstand.dev/gang-size"] = "two"
    built = bodies.build([a_node("n1")], [], pods, SETTINGS)
    assert built.snapshot.jobs == ()
    assert "leitstand.dev/gang-size is 'two'" in built.refused["acme/gangs/ring"]


def test_a_plain_pods_priority_comes_from_its_annotation_or_its_priority_class() -> None:
    annotated, classed, neither = a_pod("a"), a_pod("b"), a_pod("c")
    annotated["metadata"]["annotations"] = {"leitstand.dev/priority": "inference"}
    classed["spec"]["priorityClassName"] = "build"
    jobs = {j.key: j.priority for j in bodies.build([a_node("n1")], [], [annotated, classed, neither], SETTINGS)
            .snapshot.jobs}  # fmt: skip
    assert jobs == {"acme/pods/a": model.Priority.INFERENCE, "acme/pods/b": model.Priority.BUILD,
                    "acme/pods/c": model.Priority.TRAIN}  # fmt: skip


def test_upstreams_podgroup_makes_a_gang_of_its_min_count_in_one_domain_of_its_topology_label() -> None:
    group = {
        "metadata": {"name": "ring", "namespace": "acme", "uid": "g1"},
        "spec": {
            "schedulingPolicy": {"gang": {"minCount": 2}},
            "schedulingConstraints": {"topology": [{"key": "network.topology.nvidia.com/leaf"}]},
        },
    }
    owners = {("PodGroup", "acme", "ring"): group}  # fmt: skip
    pods = [a_pod(f"ring-{i}") for i in range(2)]
    for pod in pods:
        pod["spec"]["schedulingGroup"] = {"podGroupName": "ring"}
    waiting = bodies.build([a_node("n1")], [], pods[:1], SETTINGS, [], owners)
    assert waiting.snapshot.jobs == ()
    assert waiting.incomplete == {"acme/podgroups/ring": "1 of its 2 pods exist; it waits for all of them"}
    (gang,) = bodies.build([a_node("n1")], [], pods, SETTINGS, [], owners).snapshot.jobs
    assert (gang.key, gang.replicas, gang.required_level) == ("acme/podgroups/ring", 2, "leaf")
    group["spec"]["schedulingConstraints"] = {"topology": [{"key": "topology.kubernetes.io/rack"}]}
    refused = bodies.build([a_node("n1")], [], pods, SETTINGS, [], owners)
    assert refused.snapshot.jobs == ()
    assert "topology.kubernetes.io/rack, which is none of the topology levels" in refused.refused["acme/podgroups/ring"]
    group["spec"] = {"schedulingPolicy": {"basic": {}}}
    basic = bodies.build([a_node("n1")], [], pods, SETTINGS, [], owners).snapshot.jobs
    assert sorted(j.key for j in basic) == ["acme/pods/ring-0", "acme/pods/ring-1"]  # a basic policy: gangs of one


def test_the_pods_of_a_jobsets_jobs_are_the_jobsets_one_gang() -> None:
    jobset = {
        "metadata": {"name": "train", "namespace": "acme", "uid": "js1"},
        "spec": {
            "replicatedJobs": [
                {"name": "leader", "replicas": 1, "template": {"spec": {"parallelism": 1}}},
                {"name": "workers", "replicas": 2, "template": {"spec": {"parallelism": 2}}},
            ]
        },
    }
    owners: dict[tuple[str, str, str], Any] = {("JobSet", "acme", "train"): jobset}
    pods = []
    for job, count in (("train-leader-0", 1), ("train-workers-0", 2), ("train-workers-1", 2)):
        key, body = an_owner("Job", job, f"uid-{job}", parallelism=count)
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "jobset.x-k8s.io/v1alpha2",
                "kind": "JobSet",
                "name": "train",
                "uid": "js1",
                "controller": True,
            }
        ]
        owners[key] = body
        pods += [owned(f"{job}-{i}", "Job", job, f"uid-{job}") for i in range(count)]  # fmt: skip
    built = bodies.build([a_node("n1")], [], pods[:4], SETTINGS, [], owners)
    assert built.snapshot.jobs == ()
    assert built.incomplete == {"acme/jobsets/train": "4 of its 5 pods exist; it waits for all of them"}
    (gang,) = bodies.build([a_node("n1")], [], pods, SETTINGS, [], owners).snapshot.jobs
    assert (gang.key, gang.replicas) == ("acme/jobsets/train", 5)
