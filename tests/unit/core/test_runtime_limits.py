"""Runtime limits: a job's own, its queue's default, and the smallest maximum on its queue path."""

from dataclasses import replace

from leitstand.core.model import Queue, QueueName, duration_text, runtime_limit
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import a_job, a_queue, a_root, bound, messages, nodes_in_leaf, reasons, snapshot

HOUR = 3600.0
NOW = 10_000.0


def tree(**limits: tuple[float | None, float | None]) -> dict[QueueName, Queue]:
    """root -> org -> team; ``limits`` gives (default, maximum) per queue name."""
    queues = [a_root().build(), a_queue("org").build(), a_queue("team").under("org").build()]
    built = {}
    for queue in queues:
        default, maximum = limits.get(queue.name, (None, None))
        built[queue.name] = replace(queue, default_runtime_limit=default, max_runtime_limit=maximum)
    return built


def test_a_job_without_a_limit_takes_the_nearest_default_and_without_any_is_unbounded() -> None:
    assert runtime_limit(None, QueueName("team"), tree()) == (None, None)
    queues = tree(root=(72 * HOUR, None), org=(24 * HOUR, None))
    assert runtime_limit(None, QueueName("team"), queues) == (24 * HOUR, None)
    assert runtime_limit(2 * HOUR, QueueName("team"), queues) == (2 * HOUR, None)  # its own wins


def test_the_smallest_maximum_on_the_path_binds_and_a_job_asking_more_is_refused() -> None:
    queues = tree(root=(None, 168 * HOUR), org=(None, 72 * HOUR), team=(100 * HOUR, None))
    assert runtime_limit(None, QueueName("team"), queues) == (72 * HOUR, None)  # the default, capped
    assert runtime_limit(48 * HOUR, QueueName("team"), queues) == (48 * HOUR, None)
    limit, problem = runtime_limit(96 * HOUR, QueueName("team"), queues)
    assert limit == 72 * HOUR
    assert problem == (
        "runtimeLimit 96h is above the maximum of 72h set by queue org; "
        "ask for at most that, or ask the queue's owner to raise maxRuntimeLimit"
    )


def test_a_parent_cycle_ends_the_walk() -> None:
    queues = tree(team=(None, HOUR))
    queues[QueueName("org")] = replace(queues[QueueName("org")], parent=QueueName("team"))
    assert runtime_limit(None, QueueName("team"), queues) == (HOUR, None)


def test_durations_read_as_people_write_them() -> None:
    assert [duration_text(s) for s in (259_200, 5_400, 90, 0)] == ["72h", "1h30m", "1m30s", "0s"]


def test_a_job_asking_more_than_its_queues_maximum_never_runs_and_takes_no_place() -> None:
    team = replace(a_queue("acme").build(), max_runtime_limit=24 * HOUR)
    jobs = [
        replace(a_job("acme/long").of(1, 8).build(), runtime_limit=48 * HOUR),
        replace(a_job("acme/short").of(1, 8).submitted_at(5).build(), runtime_limit=12 * HOUR),
    ]
    decisions = schedule(snapshot(nodes_in_leaf("su-1", 1), [a_root(), team], jobs), now=NOW)
    assert bound(decisions) == {"acme/short": ("su-1-n1",)}
    assert reasons(decisions) == {"acme/long": "RuntimeLimitTooLong"}
    assert messages(decisions)["acme/long"].startswith("runtimeLimit 48h is above the maximum of 24h")
    assert [e.position for e in decisions.pending] == [None]  # no place in the queue: it can never run
