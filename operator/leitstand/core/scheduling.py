"""``schedule``: one scheduling cycle, from a snapshot to decisions.

A cycle is a few small actions over one index and one statement. Each action
reads the ``Index`` (fixed once built), changes the ``Statement`` (tentative
allocations with checkpoint, rollback and commit) and returns what it decided
(a ``Decided``); ``schedule`` adds them up in this order:

1. ``index.build``: resolve each job's queue from its namespace (leaf queues
   only; a namespace claimed by two leaves is scheduled by neither; a queue in
   or below a parent cycle schedules nothing and says so); hold what running
   jobs use (terminating jobs hold their nodes but no longer count for their
   queue); set aside jobs that could never run here, even on an empty cluster
   (``Unschedulable``, ``NoMatchingNodes``): they demand nothing; compute every
   queue's fair share per GPU type from the demand (``fairshare``; a queue that
   owns a reservation demands at most its pool);
2. ``actions.nominate``: a job that evictions freed capacity for binds there,
   or keeps it while its victims terminate;
3. ``actions.repair``: finish or release gangs that the applier left partly bound;
4. ``actions.allocate``: serve lanes of (queue, GPU type), least served first
   (allocated ÷ fair share for that type; a higher-priority head first), jobs
   within a lane by priority then submission time, each gang placed in full or
   not at all (``places``, ``placement``); a gang waiting longer than
   ``Policy.starvation_seconds`` that could fit its empty nodes gets a
   reservation from the moment the running jobs' limits free them, and other
   jobs use those nodes only if they end by then (``reservations``), so a stream
   of smaller jobs cannot starve it (without ``Policy.backfill``: it holds its
   whole GPU type);
5. ``preemption.reclaim`` (when ``Policy.preemption``): for jobs still waiting,
   reclaim and preemption, nominating what each eviction frees for the job it
   was freed for;
6. ``consolidation.consolidate`` (when ``Policy.preemption``): for gangs that require a domain
   and wait although enough GPUs are free in total, cheap-to-move jobs leave one domain and are
   placed again elsewhere at once, all or nothing, within a budget of lost work;
7. ``elastic.grow``: elastic jobs' replicas above their gangs (``elastic.split`` made them
   jobs of one replica that are never demand) grow into capacity no waiting job of a queue at
   or below its fair share could use; ``elastic.fold`` gives their binds, evictions and
   releases back to their jobs, with ranks;
8. ``explain.explain``: explain every job that still waits, with its place in
   its queue, and report each queue's allocated, reclaiming and pending GPUs;
9. with ``estimate``, ``forecast.estimate``: every waiting job's expected start.

Pure and deterministic: no I/O, no clock (``now`` is an argument), ties broken
by names, every output sorted (but the job → queue lookup table, in snapshot
order). The cyclic garbage collector is paused while a cycle runs
(``_collector_paused``): a cycle of 100,000 pods allocates millions of
short-lived objects that reference counting frees, and the collections they
trigger walk every object of the snapshot again, for a fifth of the cycle.
"""

import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import replace

from leitstand.core import actions, consolidation, elastic, explain, forecast, index, preemption
from leitstand.core.decided import Decided
from leitstand.core.model import Decisions, Policy, Snapshot
from leitstand.core.statements import Statement

Action = Callable[[index.Index, Statement, Decided], Decided]

DEFAULT_POLICY = Policy()


def schedule(snapshot: Snapshot, policy: Policy = DEFAULT_POLICY, *, now: float, estimate: bool = False) -> Decisions:
    """One scheduling cycle: binds, evictions, releases and explanations for ``snapshot``; with ``estimate``,
    also when each waiting job is expected to start (``forecast.estimate``, planned after the cycle).

    Idempotent for the same inputs; the order of the snapshot's tuples does not
    change the result.
    """
    with _collector_paused():
        return _schedule(snapshot, policy, now, estimate)


def _schedule(snapshot: Snapshot, policy: Policy, now: float, estimate: bool) -> Decisions:
    split = elastic.split(snapshot)
    facts, statement, decided = index.build(split, policy, now)
    steps: list[Action] = [actions.nominate, actions.repair, actions.allocate]
    if policy.preemption:
        steps += [preemption.reclaim, consolidation.consolidate]
    steps.append(elastic.grow)
    for action in steps:
        decided.add(action(facts, statement, decided))
    decisions = explain.explain(facts, statement, decided)
    if estimate:
        decisions = replace(decisions, estimates=forecast.estimate(facts, statement, decided))
    return decisions if split is snapshot else elastic.fold(decisions, snapshot)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: what the cycle leaves in cycles is collected after it, as usual.
    Changes no result; restores the collector as it found it (a caller that paused it keeps it paused)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
