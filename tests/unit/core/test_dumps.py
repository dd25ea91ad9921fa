"""A dumped snapshot replays offline into the same decisions and explanations."""

import json
import math
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from leitstand.core import dumps
from leitstand.core.model import (
    Finished,
    GPUType,
    Job,
    JobKey,
    Node,
    NodeName,
    Policy,
    Priority,
    Queue,
    QueueName,
    Reservation,
    Share,
    Snapshot,
)
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import a_job, a_queue, a_root, nodes_in_leaf, snapshot
from tests.unit.core.test_properties import NOW, clusters


@settings(max_examples=40, deadline=None)
@given(clusters())
def test_dump_then_load_is_the_identity_and_replays_the_same_decisions(snap: Snapshot) -> None:
    policy = Policy(starvation_seconds=123)
    text = json.dumps(dumps.dump(snap, policy, now=NOW))
    loaded, loaded_policy, now = dumps.load(json.loads(text))
    assert (loaded_policy, now) == (policy, NOW)
    assert schedule(loaded, loaded_policy, now=now) == schedule(snap, policy, now=NOW)


NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
PAIRS = st.lists(st.tuples(NAMES, NAMES), max_size=3, unique_by=lambda p: p[0]).map(lambda p: tuple(sorted(p)))
TAINTS = st.lists(st.tuples(NAMES, st.text(max_size=3), st.sampled_from(["NoSchedule", "NoExecute"])), max_size=2)
TOLERATIONS = st.lists(
    st.tuples(
        st.text(max_size=4),
        st.sampled_from(["Equal", "Exists"]),
        st.text(max_size=3),
        st.sampled_from(["", "NoSchedule"]),
    ),
    max_size=2,
)
TIMES = st.floats(0, 1e9, allow_nan=False)


@st.composite
def every_field(draw: st.DrawFn) -> Snapshot:
    """Snapshots that use every field of nodes, queues and jobs (terminating jobs, nominations, taints, ...)."""
    node_names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    nodes = tuple(
        Node(
            name=NodeName(name),
            gpu_type=draw(st.sampled_from([None, GPUType("b200"), GPUType("rtx-pro-6000")])),
            gpus=draw(st.integers(0, 8)),
            cpu_millis=draw(st.integers(0, 10**6)),
            memory_bytes=draw(st.integers(0, 10**13)),
            domains=tuple(draw(st.lists(st.text(max_size=4), max_size=3))),
            labels=draw(PAIRS),
            ready=draw(st.booleans()),
            taints=tuple(draw(TAINTS)),
        )
        for name in node_names
    )
    queue_names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    queues = tuple(
        Queue(
            name=QueueName(name),
            parent=draw(st.one_of(st.none(), st.sampled_from([QueueName(q) for q in queue_names]))),
            namespaces=tuple(draw(st.lists(NAMES, max_size=2))),
            shares={
                GPUType(t): Share(
                    draw(st.integers(0, 100)), draw(st.one_of(st.none(), st.integers(0, 200))), draw(st.integers(0, 5))
                )
                for t in draw(st.lists(st.sampled_from(["b200", "rtx-pro-6000"]), max_size=2, unique=True))
            },
            reservation=draw(st.one_of(st.none(), st.builds(Reservation, PAIRS, st.booleans()))),
            min_runtime_seconds=draw(st.floats(0, 1e5, allow_nan=False)),
            usage=draw(st.floats(0, 1e12, allow_nan=False)),
            preemption_notice=draw(st.floats(0, 3600, allow_nan=False)),
            max_preemption_grace=draw(st.one_of(st.none(), st.floats(0, 86_400, allow_nan=False))),
        )
        for name in queue_names
    )
    jobs = []
    for name in draw(st.lists(NAMES, max_size=5, unique=True)):
        replicas = draw(st.integers(0, 3))
        node_or_none = st.one_of(st.none(), st.sampled_from([NodeName(n) for n in node_names]))
        jobs.append(
            Job(
                key=JobKey(f"ns/{name}"),
                namespace="ns",
                replicas=replicas,
                gpus_per_replica=draw(st.integers(0, 8)),
                cpu_millis_per_replica=draw(st.integers(0, 10**5)),
                memory_bytes_per_replica=draw(st.integers(0, 10**12)),
                gpu_type=draw(st.sampled_from([None, GPUType("b200")])),
                priority=draw(st.sampled_from(list(Priority))),
                required_level=draw(st.sampled_from([None, "spine", "leaf"])),
                preferred_level=draw(st.sampled_from([None, "leaf", "node"])),
                node_selector=draw(PAIRS),
                tolerations=tuple(draw(TOLERATIONS)),
                submitted=draw(TIMES),
                placement=tuple(draw(st.lists(node_or_none, max_size=replicas))),
                started=draw(st.one_of(st.none(), TIMES)),
                terminating=draw(st.booleans()),
                nominated=tuple(draw(st.lists(st.sampled_from([NodeName(n) for n in node_names]), max_size=replicas))),
                runtime_limit=draw(st.one_of(st.none(), TIMES)),
                reserved=(
                    reserved := tuple(
                        draw(st.lists(st.sampled_from([NodeName(n) for n in node_names]), max_size=replicas))
                    )
                ),
                reserved_start=draw(st.one_of(TIMES, st.just(math.inf))) if reserved else None,
                checkpoint_interval=draw(st.one_of(st.none(), TIMES)),
                last_checkpoint=draw(st.one_of(st.none(), TIMES)),
            )
        )
    finished = draw(
        st.lists(
            st.builds(
                Finished,
                namespace=st.sampled_from(["a", "b"]),
                ran=TIMES,
                runtime_limit=st.one_of(st.none(), TIMES),
                finished=TIMES,
            ),
            max_size=4,
        )
    )
    return Snapshot(nodes, queues, tuple(jobs), tuple(finished))


def _sorted(snap: Snapshot) -> Snapshot:
    return Snapshot(
        tuple(sorted(snap.nodes, key=lambda n: n.name)),
        tuple(sorted(snap.queues, key=lambda q: q.name)),
        tuple(sorted(snap.jobs, key=lambda j: j.key)),
        tuple(sorted(snap.finished, key=lambda f: (f.namespace, f.finished, f.ran, f.runtime_limit or -1.0))),
    )


@settings(max_examples=200, deadline=None, database=None)
@given(every_field())
def test_load_of_a_dump_is_exactly_the_snapshot_for_every_field(snap: Snapshot) -> None:
    policy = Policy(
        topology_levels=("spine", "leaf", "node"),
        default_preferred_level=None,
        starvation_seconds=7,
        backfill=False,
        reservations=2,
    )
    loaded, loaded_policy, now = dumps.load(json.loads(json.dumps(dumps.dump(snap, policy, now=NOW))))
    assert loaded == _sorted(snap)
    assert (loaded_policy, now) == (policy, NOW)
    assert schedule(loaded, loaded_policy, now=now) == schedule(snap, policy, now=NOW)


def test_leitstand_replay_prints_the_decisions(tmp_path: Path) -> None:
    snap = snapshot(
        nodes_in_leaf("su-1", 2, pool="soofi"),
        [a_root(), a_queue("soofi").with_share(8).reserving(pool="soofi")],
        [a_job("soofi/pretrain").of(2, 8).with_priority(Priority.BUILD), a_job("soofi/eval").of(1, 8).submitted_at(5)],
    )
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(dumps.dump(snap, Policy(), now=NOW)))
    result = subprocess.run(
        [sys.executable, "-m", "leitstand", "replay", str(path)], capture_output=True, text=True, check=True, timeout=60
    )
    replayed = json.loads(result.stdout)
    assert replayed["binds"] == [{"job": "soofi/eval", "nodes": ["su-1-n1"]}]
    assert replayed["pending"][0]["reason"] == "QuotaExhausted"
    assert replayed["queues"]["soofi"]["b200"]["fairShare"] == 16


def test_replaying_something_else_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"kind": "Pod"}')
    result = subprocess.run(
        [sys.executable, "-m", "leitstand", "replay", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {path} is not a valid Leitstand snapshot: not a Leitstand snapshot (format None, expected "
        "'leitstand.dev/snapshot/v1')"
    )
