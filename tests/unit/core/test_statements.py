"""``Statement``: tentative allocations with checkpoint, rollback and commit."""

import pytest

from leitstand.core.statements import Statement
from tests.unit.core.builders import a_job, a_node

PATH = ("acme", "root")


def a_statement() -> Statement:
    return Statement([a_node("n1").build(), a_node("n2").build(), a_node("cpu").with_gpus(0, None).build()])


def test_a_hold_takes_resources_and_counts_for_every_queue_on_the_path() -> None:
    statement = a_statement()
    job = a_job("acme/a").of(2, 4).build()
    statement.hold(job, ["n1", "n1"], PATH, firm=False)
    assert statement.free["n1"].gpus == 0
    assert statement.free_by_type["b200"] == 8
    assert statement.queue_allocated("acme", "b200") == statement.queue_allocated("root", "b200") == 8
    assert statement.queue_firm("acme", "b200") == 0
    assert statement.holdings["acme/a"].nodes == ("n1", "n1")


def test_rollback_undoes_holds_and_releases_since_the_mark() -> None:
    statement = a_statement()
    running = a_job("acme/running").of(1, 8).build()
    statement.hold(running, ["n2"], PATH, firm=True)
    statement.commit()
    mark = statement.checkpoint()
    statement.release(running)
    statement.hold(a_job("acme/new").of(1, 8).build(), ["n1"], PATH, firm=False)
    statement.rollback(mark)
    assert statement.free["n1"].gpus == 8
    assert statement.free["n2"].gpus == 0
    assert set(statement.holdings) == {"acme/running"}
    assert statement.queue_allocated("acme", "b200") == statement.queue_firm("acme", "b200") == 8
    statement.rollback(mark)  # idempotent for the same mark
    assert set(statement.holdings) == {"acme/running"}


def test_a_second_hold_adds_replicas_and_rollback_restores_the_first() -> None:
    statement = a_statement()
    job = a_job("acme/a").of(2, 8).build()
    statement.hold(job, ["n1"], PATH, firm=False)
    mark = statement.checkpoint()
    statement.hold(job, ["n2"], PATH, firm=False)
    assert statement.holdings["acme/a"].nodes == ("n1", "n2")
    statement.rollback(mark)
    assert statement.holdings["acme/a"].nodes == ("n1",)
    assert statement.free["n2"].gpus == 8
    assert statement.queue_allocated("acme", "b200") == 8


def test_a_mark_taken_before_a_commit_is_stale() -> None:
    statement = a_statement()
    mark = statement.checkpoint()
    statement.hold(a_job("acme/a").of(1, 8).build(), ["n1"], PATH, firm=False)
    statement.commit()
    with pytest.raises(ValueError, match="stale statement mark 0"):
        statement.rollback(mark)
    assert set(statement.holdings) == {"acme/a"}  # nothing undone


def test_a_mark_never_handed_out_is_an_error() -> None:
    statement = a_statement()
    with pytest.raises(ValueError, match="stale statement mark 5"):
        statement.rollback(5)


def test_marks_after_a_commit_roll_back_only_what_came_after() -> None:
    statement = a_statement()
    statement.hold(a_job("acme/a").of(1, 8).build(), ["n1"], PATH, firm=False)
    statement.commit()
    mark = statement.checkpoint()
    assert mark == 1
    statement.hold(a_job("acme/b").of(1, 8).build(), ["n2"], PATH, firm=False)
    statement.rollback(mark)
    assert set(statement.holdings) == {"acme/a"}


def test_version_changes_only_when_resources_are_given_back() -> None:
    statement = a_statement()
    job = a_job("acme/a").of(1, 8).build()
    start = statement.version
    mark = statement.checkpoint()
    statement.hold(job, ["n1"], PATH, firm=False)
    assert statement.version == start  # taking only makes fitting harder: cached failures stay true
    statement.rollback(mark)
    assert statement.version == start + 1
    statement.hold(job, ["n1"], PATH, firm=False)
    statement.commit()
    statement.release(job)
    assert statement.version == start + 2
    mark = statement.checkpoint()
    statement.hold(job, ["n1"], PATH, firm=False)
    statement.release(job)
    assert statement.version == start + 3
    statement.rollback(mark)  # undoing the release takes resources back (no change); undoing the hold gives
    assert statement.version == start + 4


def test_load_and_reserve_are_permanent_and_counted() -> None:
    statement = a_statement()
    statement.load(a_job("acme/a").of(1, 4).build(), ["n1"], PATH, firm=True)
    statement.reserve({"n2": (8, 0, 0)}, PATH, "b200", 8, firm=False)
    assert statement.checkpoint() == 0
    assert statement.free["n1"].gpus == 4
    assert statement.free["n2"].gpus == 0
    assert statement.free_by_type["b200"] == 4
    assert statement.queue_allocated("acme", "b200") == 12
    assert statement.queue_firm("acme", "b200") == 4


def test_nodes_by_free_gpus_follow_holds() -> None:
    statement = a_statement()
    assert [[name for _cpu, name in group] for group in statement.by_free_gpus(1)] == [["n1", "n2"]]
    statement.hold(a_job("acme/a").of(1, 6).build(), ["n1"], PATH, firm=False)
    assert [[name for _cpu, name in group] for group in statement.by_free_gpus(1)] == [["n1"], ["n2"]]
    assert [[name for _cpu, name in group] for group in statement.by_free_gpus(3)] == [["n2"]]
