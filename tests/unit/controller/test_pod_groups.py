"""What the scheduler writes for gangs of pods it did not create: whole evictions, and Events said once."""

from typing import Any

from leitstand.controller.configuration import Configuration
from leitstand.controller.scheduler import Scheduler
from leitstand.core import model
from leitstand.kube import bodies
from leitstand.kube.store import Store
from tests.unit.kube.test_bodies import SETTINGS, a_node, an_owner, owned


def scheduler() -> Scheduler:
    """A scheduler whose client is never called: only the writes it plans are looked at."""
    return Scheduler(client=None, store=Store(), config=Configuration(), leading=lambda: True)  # type: ignore[arg-type]


def a_gang(bound: bool) -> tuple[bodies.Built, model.JobKey]:
    owners = dict([an_owner("Job", "sweep", parallelism=2)])
    pods = [owned(f"sweep-{i}", "Job", "sweep") for i in range(2)]
    if bound:
        for rank, pod in enumerate(pods):
            pod["spec"]["nodeName"] = f"n{rank + 1}"
            pod["status"] = {"phase": "Running", "startTime": "2027-01-15T08:00:00Z"}
    built = bodies.build([a_node("n1"), a_node("n2")], [], pods, SETTINGS, [], owners)
    return built, model.JobKey("acme/jobs/sweep")


def decided(*, evictions: tuple[model.Eviction, ...] = (), pending: tuple[model.Explanation, ...] = ()) -> Any:
    return model.Decisions(binds=(), evictions=evictions, releases=(), pending=pending, queues={},
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
