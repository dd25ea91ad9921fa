"""A dumped snapshot replays offline into the same decisions and explanations."""

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings

from leitstand.core import snapshots
from leitstand.core.model import Policy, Priority, Snapshot
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import a_job, a_queue, a_root, nodes_in_leaf, snapshot
from tests.unit.core.test_properties import NOW, clusters


@settings(max_examples=40, deadline=None)
@given(clusters())
def test_dump_then_load_is_the_identity_and_replays_the_same_decisions(snap: Snapshot) -> None:
    policy = Policy(starvation_seconds=123)
    text = json.dumps(snapshots.dump(snap, policy, now=NOW))
    loaded, loaded_policy, now = snapshots.load(json.loads(text))
    assert (loaded_policy, now) == (policy, NOW)
    assert schedule(loaded, loaded_policy, now=now) == schedule(snap, policy, now=NOW)


def test_leitstand_replay_prints_the_decisions(tmp_path: Path) -> None:
    snap = snapshot(
        nodes_in_leaf("su-1", 2, pool="soofi"),
        [a_root(), a_queue("soofi").with_share(16).reserving(pool="soofi")],
        [a_job("soofi/pretrain").of(4, 8).with_priority(Priority.BUILD), a_job("soofi/eval").of(1, 8).submitted_at(5)],
    )
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshots.dump(snap, Policy(), now=NOW)))
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
