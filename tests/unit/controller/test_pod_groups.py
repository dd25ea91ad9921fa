"""What the scheduler writes for gangs of pods it did not create: whole evictions, runtime limits ended, expected
starts, and Events said once."""

from typing import Any

from leitstand.controller.configuration import Configuration
from leitstand.controller.scheduler import Report, Scheduler, _expected_starts, _limits
from leitstand.core import model
from leitstand.kube import bodies
from leitstand.kube.store import Store
from tests.unit.kube.test_bodies import SETTINGS, a_node, a_pod, an_owner, owned


def scheduler() -> Scheduler:
    """A scheduler whose client is never called: only the writes it plans are looked at."""
    return Scheduler(client=None, store=Store(), config=Configuration(), leading=lambda: True)  # type: ignore[arg-type]


def a_gang(bound: bool, **annotations: str) -> tuple[bodies.Built, model.JobKey]:
    owners = dict([an_owner("Job", "sweep", parallelism=2)])
    pods = [owned(f"sweep-{i}", "Job", "sweep", **annotations) for i in range(2)]
    for i, pod in enumerate(pods):
        pod["metadata"]["uid"] = f"pod-uid-{i}"
    if bound:
        for rank, pod in enumerate(pods):
            pod["spec"]["nodeName"] = f"n{rank + 1}"
            pod["status"] = {"phase": "Running", "startTime": "2027-01-15T08:00:00Z"}
    built = bodies.build([a_node("n1"), a_node("n2")], [], pods, SETTINGS, [], owners)
    return built, model.JobKey("acme/jobs/sweep")


def decided(
    *,
    evictions: tuple[model.Eviction, ...] = (),
    pending: tuple[model.Explanation, ...] = (),
    binds: tuple[model.Bind, ...] = (),
) -> Any:
    return model.Decisions(binds=binds, evictions=evictions, releases=(), pending=pending, queues={},
                           job_queues={model.JobKey("acme/jobs/sweep"): model.QueueName("acme")})  # fmt: skip


def targets(writes: list[Any]) -> list[tuple[str, str]]:
    return [(w.verb, w.path.rsplit("/", 1)[-1] if w.verb != "create" else w.body["involvedObject"]["kind"])
            for w in writes]  # fmt: skip


def test_an_evicted_gang_loses_every_pod_and_its_owner_and_pods_are_told() -> None:
    built, key = a_gang(bound=True)
    eviction = model.Eviction(key, model.Reason.RECLAIMED, "acme/other", "acme is below its share")
    decisions = decided(evictions=(eviction,))
    writes = scheduler()._group_writes(decisions, built, {}, now=1e9)
    assert sorted(targets(writes)) == sorted([
        ("patch", "sweep-0"), ("patch", "status"), ("patch", "sweep-1"), ("patch", "status"),
        ("create", "Pod"), ("create", "Pod"), ("create", "Job")])  # fmt: skip
    # each pod is marked DisruptionTarget (a Job's podFailurePolicy may ignore it), then deleted
    marked = [w for w in writes if w.path.endswith("/status")]
    assert [w.body["status"]["conditions"][0]["type"] for w in marked] == ["DisruptionTarget"] * 2
    assert sorted((w.then.verb, w.then.path.rsplit("/", 1)[-1]) for w in marked if w.then) == [
        ("delete", "sweep-0"), ("delete", "sweep-1")]  # fmt: skip
    events = [w.body for w in writes if w.verb == "create"]
    assert {e["reason"] for e in events} == {"Preempting"}
    assert "its 2 pods stop now" in events[0]["message"]


def test_what_is_said_of_a_waiting_gang_is_said_once_until_it_changes() -> None:
    built, key = a_gang(bound=False)
    waiting = model.Explanation(key, model.Reason.INSUFFICIENT_CAPACITY, "needs 2 x 8 b200", model.QueueName("acme"), 1)
    decisions = decided(pending=(waiting,))
    running = scheduler()
    first = running._group_writes(decisions, built, {}, now=1e9)
    assert sorted(targets(first)) == [("create", "Job"), ("create", "Pod"), ("create", "Pod")]
    assert running._group_writes(decisions, built, {}, now=1e9 + 5) == []
    moved = model.Explanation(key, model.Reason.TOPOLOGY_UNSATISFIABLE, "needs one leaf", model.QueueName("acme"), 1)
    again = running._group_writes(decided(pending=(moved,)), built, {}, now=1e9 + 10)
    assert len(again) == 3


ACME = {model.QueueName("acme"): model.Queue(model.QueueName("acme"), default_runtime_limit=3600.0)}


def a_limited_gang() -> tuple[bodies.Built, float, dict[str, Any]]:
    """A Job's running gang of two pods with a 2 h limit: the built snapshot, when it started, its owner's body."""
    built, key = a_gang(bound=True, runtime_limit="2h")
    started, owner = built.snapshot.jobs[0].started, built.groups[key].owner
    assert started is not None
    assert owner is not None
    return built, started, owner


def test_a_gang_of_pods_at_its_runtime_limit_has_its_job_ended_then_its_pods_deleted_each_told_once() -> None:
    built, started, owner = a_limited_gang()
    owner["status"] = {"startTime": "2027-01-15T07:59:00Z"}  # the Job started a minute before its pods
    assert _limits(built, decided(), {}, now=started + 7199) == []
    told: set[str] = set()
    writes = _limits(built, decided(), {}, now=started + 7200, told=told)
    # the Job's own deadline moves to now: its controller stops the pods and makes no new ones
    assert sorted(targets(writes)) == sorted([("patch", "sweep"), ("create", "Pod"), ("create", "Pod"),
                                              ("create", "Job")])  # fmt: skip
    (ended,) = [w for w in writes if w.verb == "patch"]
    assert ended.path == "/apis/batch/v1/namespaces/acme/jobs/sweep"
    assert ended.body == {"spec": {"activeDeadlineSeconds": 7260}}
    events = [w.body for w in writes if w.verb == "create"]
    assert {e["reason"] for e in events} == {"RuntimeLimitExceeded"}
    assert "the gang ran to its runtime limit of 2h; its Job ends" in events[0]["message"]
    again = _limits(built, decided(), {}, now=started + 7210, told=told)  # the patch not seen yet: no Events again
    assert targets(again) == [("patch", "sweep")]
    owner["spec"]["activeDeadlineSeconds"] = 7260  # the patch landed, the pods are still there: deleted
    assert sorted(targets(_limits(built, decided(), {}, now=started + 7220, told=told))) == [
        ("delete", "sweep-0"), ("delete", "sweep-1")]  # fmt: skip


def test_a_gang_whose_job_has_no_start_or_is_suspended_loses_its_pods_and_its_job_is_left_alone() -> None:
    built, started, owner = a_limited_gang()
    for status, suspend in (({}, False), ({"startTime": "2027-01-15T07:59:00Z"}, True)):
        owner["status"], owner["spec"]["suspend"] = status, suspend
        writes = _limits(built, decided(), {}, now=started + 7200)
        assert sorted(targets(writes)) == sorted([("delete", "sweep-0"), ("delete", "sweep-1"), ("create", "Pod"),
                                                  ("create", "Pod"), ("create", "Job")])  # fmt: skip
        assert "the gang ran to its runtime limit of 2h; its 2 pods deleted" in writes[-1].body["message"]


def test_a_gang_without_a_limit_of_its_own_ends_at_its_queues_default_and_one_unbounded_never_does() -> None:
    built, _key = a_gang(bound=True)
    started = built.snapshot.jobs[0].started
    assert started is not None
    assert _limits(built, decided(), {}, now=started + 10 * 86400) == []  # no limit anywhere: unbounded
    writes = _limits(built, decided(), ACME, now=started + 3600)
    assert sorted(w.path.rsplit("/", 1)[-1] for w in writes if w.verb == "delete") == ["sweep-0", "sweep-1"]


def test_a_plain_pod_at_its_limit_is_deleted_unless_its_own_deadline_ends_it_first() -> None:
    pod = a_pod("notebook", node="n1")
    pod["metadata"]["annotations"] = {bodies.RUNTIME_LIMIT_ANNOTATION: "30m"}
    pod["status"] = {"phase": "Running", "startTime": "2027-01-15T08:00:00Z"}
    built = bodies.build([a_node("n1")], [], [pod], SETTINGS, [], {})
    started = built.snapshot.jobs[0].started
    assert started is not None
    writes = _limits(built, decided(), {}, now=started + 1800)
    assert sorted(targets(writes)) == [("create", "Pod"), ("delete", "notebook")]
    pod["spec"]["activeDeadlineSeconds"] = 600  # the kubelet ends it at 10 minutes
    built = bodies.build([a_node("n1")], [], [pod], SETTINGS, [], {})
    assert _limits(built, decided(), {}, now=started + 1800) == []


def test_a_waiting_gang_of_pods_is_annotated_with_its_expected_start_which_moves_only_by_enough() -> None:
    built, key = a_gang(bound=False)
    waiting = model.Explanation(key, model.Reason.INSUFFICIENT_CAPACITY, "needs 2 x 8 b200", model.QueueName("acme"), 1)
    decisions = decided(pending=(waiting,))
    running = scheduler()
    running.forecaster.estimates = {key: model.Planned(1e9 + 3600, (model.NodeName("n1"), model.NodeName("n2")))}
    report = Report(decisions, None)  # type: ignore[arg-type]
    writes = running._plain_pod_conditions(decisions, built, report, now=1e9)
    eta = "2001-09-09T02:47:00Z"  # 1e9 + 3600 s, to the minute (rounded up)
    annotated = [w for w in writes if w.verb == "patch" and not w.path.endswith("/status")]
    assert sorted(w.path.rsplit("/", 1)[-1] for w in annotated) == ["sweep-0", "sweep-1"]
    assert {w.body["metadata"]["annotations"][bodies.ESTIMATED_START_ANNOTATION] for w in annotated} == {eta}
    assert report.pod_estimates == {key: eta}
    for pod in built.pods_of_gang[key].values():  # the annotation landed
        pod["metadata"].setdefault("annotations", {})[bodies.ESTIMATED_START_ANNOTATION] = eta
    running.forecaster.estimates = {key: model.Planned(1e9 + 3660)}  # a minute later: not worth a rewrite
    again = running._plain_pod_conditions(decisions, built, Report(decisions, None), now=1e9)  # type: ignore[arg-type]
    assert [w for w in again if not w.path.endswith("/status")] == []
    running.forecaster.estimates = {}  # no estimate any more: the annotation goes
    gone = running._plain_pod_conditions(decisions, built, Report(decisions, None), now=1e9)  # type: ignore[arg-type]
    assert [w.body["metadata"]["annotations"] for w in gone if not w.path.endswith("/status")] == [
        {bodies.ESTIMATED_START_ANNOTATION: None}] * 2  # fmt: skip


def test_an_expected_start_anyone_wrote_is_replaced_not_a_failed_cycle_and_a_running_gang_loses_its_own() -> None:
    built, key = a_gang(bound=False, estimated_start_time="tomorrow")
    waiting = model.Explanation(key, model.Reason.INSUFFICIENT_CAPACITY, "needs 2 x 8 b200", model.QueueName("acme"), 1)
    decisions = decided(pending=(waiting,))
    running = scheduler()
    running.forecaster.estimates = {key: model.Planned(1e9 + 3600)}
    writes = running._plain_pod_conditions(decisions, built, Report(decisions, None), now=1e9)  # type: ignore[arg-type]
    assert {w.body["metadata"]["annotations"][bodies.ESTIMATED_START_ANNOTATION] for w in writes
            if not w.path.endswith("/status")} == {"2001-09-09T02:47:00Z"}  # fmt: skip
    bound, _key = a_gang(bound=True, estimated_start_time="2001-09-09T02:47:00Z")
    writes = running._plain_pod_conditions(decided(), bound, Report(decided(), None), now=1e9)  # type: ignore[arg-type]
    assert [w.body for w in writes] == [{"metadata": {"annotations": {bodies.ESTIMATED_START_ANNOTATION: None}}}] * 2


def test_the_estimate_is_read_at_a_start_of_the_whole_gang_never_at_a_replacement_pod() -> None:
    built, key = a_gang(bound=False, estimated_start_time="2001-09-09T02:47:00Z")
    start = model.Bind(key, (model.NodeName("n1"), model.NodeName("n2")))
    assert _expected_starts(decided(binds=(start,)), built.pod_of_job, built.pods_of_gang) == {key: 1e9 + 3620}
    running, _key = a_gang(bound=True, estimated_start_time="2001-09-09T02:47:00Z")
    replacement = model.Bind(key, (model.NodeName("n1"),))
    assert _expected_starts(decided(binds=(replacement,)), running.pod_of_job, running.pods_of_gang) == {}
    unannotated, _key = a_gang(bound=False)
    assert _expected_starts(decided(binds=(start,)), unannotated.pod_of_job, unannotated.pods_of_gang) == {}
