"""Four tenants on one cluster converge to within one node of their fair shares.

The companies submit single-node jobs: a queue below its fair share may reclaim
only what keeps it within that share, so the granularity of its jobs is the
precision fairness can reach.
"""

from collections import Counter

from leitstand.core.model import GPUType, Priority, Snapshot
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import a_job, a_queue, a_root, apply, nodes_in_leaf, snapshot

B200 = GPUType("b200")


def allocated(snap: Snapshot) -> Counter[str]:
    held: Counter[str] = Counter()
    for job in snap.jobs:
        if job.running:
            held[job.namespace] += job.gpus
    return held


def test_soofi_reserved_and_three_companies_converge_to_their_fair_shares() -> None:
    nodes = nodes_in_leaf("soofi-su", 8, pool="soofi") + [
        node for leaf in ("su-1", "su-2", "su-3") for node in nodes_in_leaf(leaf, 8)
    ]  # 64 reserved + 192 shared GPUs
    queues = [
        a_root(),
        a_queue("soofi").with_share(64, limit=64, weight=0).reserving(pool="soofi", lend=True),
        a_queue("acme").with_share(64, weight=2),
        a_queue("nordwind").with_share(48, weight=1),
        a_queue("helix").with_share(32, weight=1),
    ]
    # acme arrives first with far more work than the cluster holds and takes everything, lent pool included
    jobs = [a_job(f"acme/j{i}").of(1, 8).submitted_at(i) for i in range(40)]
    snap = snapshot(nodes, queues, jobs)
    now = 1000.0
    snap = apply(snap, schedule(snap, now=now), now=now)
    assert allocated(snap) == {"acme": 256}

    later = [a_job(f"nordwind/j{i}").of(1, 8).submitted_at(now + i) for i in range(20)]
    later += [a_job(f"helix/j{i}").of(1, 8).submitted_at(now + i) for i in range(20)]
    later += [a_job("soofi/pretrain").of(8, 8).requiring("leaf").with_priority(Priority.BUILD).submitted_at(now)]
    snap = Snapshot(snap.nodes, snap.queues, snap.jobs + tuple(j.build() for j in later))
    for _cycle in range(30):
        now += 60
        decisions = schedule(snap, now=now)
        if not (decisions.binds or decisions.evictions):
            break
        snap = apply(snap, decisions, now=now)
    fair = {name: status[B200].fair_share for name, status in decisions.queues.items()}
    assert fair["soofi"] == 64
    assert (fair["acme"], fair["nordwind"], fair["helix"]) == (88, 60, 44)
    held = allocated(snap)
    for tenant in ("soofi", "acme", "nordwind", "helix"):
        assert abs(held[tenant] - fair[tenant]) <= 8, (tenant, held[tenant], fair[tenant])
    assert sum(held.values()) >= 256 - 8
