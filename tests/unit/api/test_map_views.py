"""What the cluster map reads: spines, the jobs on each node, leaf queues and their colours."""

import re
import zlib

from hypothesis import given
from hypothesis import strategies as st

from leitstand.api import ui, views
from leitstand.core import model
from leitstand.core.model import Bind, Decisions, Eviction, JobKey, NodeName, QueueName, Reason
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import QueueBuilder, a_job, a_node, a_queue, a_root, snapshot


def decided(snap: model.Snapshot, *, binds: dict[str, tuple[str, ...]], evicted: tuple[str, ...] = (),
            queues: dict[str, str]) -> model.CycleRecord:  # fmt: skip
    decisions = Decisions(
        binds=tuple(Bind(JobKey(job), tuple(NodeName(n) for n in nodes)) for job, nodes in sorted(binds.items())),
        evictions=tuple(Eviction(JobKey(job), Reason.RECLAIMED, JobKey("x/y"), "") for job in evicted),
        releases=(), pending=(), queues={},
        job_queues={JobKey(job): QueueName(queue) for job, queue in queues.items()},
    )  # fmt: skip
    return model.CycleRecord(snap, decisions, model.Policy(), 0.0)


def test_each_node_lists_the_jobs_it_holds_once_the_cycle_is_carried_out_with_its_spine() -> None:
    snap = snapshot(
        [a_node("n1").in_leaf("su-1", "spine-1").build(), a_node("n2").in_leaf("su-2", "spine-2").build()],
        [a_root(), a_queue("vision"), a_queue("speech")],
        [
            a_job("vision/train").of(1, 4).running_on("n1"),
            a_job("speech/asr").of(1, 4).running_on("n1"),
            a_job("speech/tts").of(2, 4),
            a_job("vision/gone").of(1, 8).running_on("n2"),
        ],
    )
    latest = decided(snap, binds={"speech/tts": ("n2", "n2")}, evicted=("vision/gone",),
                     queues={"vision/train": "vision", "speech/asr": "speech", "speech/tts": "speech", "vision/gone": "vision"})  # fmt: skip
    view = views.cluster(latest)
    nodes = {node.name: node for node in view.nodes}
    assert [(j.namespace, j.name, j.kind, j.queue, j.gpus, j.replicas) for j in nodes["n1"].jobs] == [
        ("speech", "asr", "TrainingJob", "speech", 4, 1),
        ("vision", "train", "TrainingJob", "vision", 4, 1),
    ]
    assert [(j.name, j.gpus, j.replicas) for j in nodes["n2"].jobs] == [("tts", 8, 2)]
    assert (nodes["n1"].spine, nodes["n2"].spine) == ("spine-1", "spine-2")
    assert (view.spine_level, view.leaf_level) == ("spine", "leaf")
    assert [(d.name, d.spine, d.gpu_types) for d in view.domains] == [("su-1", "spine-1", ["b200"]),
                                                                     ("su-2", "spine-2", ["b200"])]  # fmt: skip
    dumped = view.model_dump(by_alias=True)
    assert dumped["spineLevel"] == "spine"
    assert dumped["nodes"][0]["jobs"][0] == {"namespace": "speech", "name": "asr", "kind": "TrainingJob",
                                             "queue": "speech", "gpus": 4, "replicas": 1}  # fmt: skip


def test_spines_sum_their_leaf_groups_and_count_nodes_that_are_not_ready() -> None:
    snap = snapshot(
        [
            a_node("a1").in_leaf("su-1", "spine-1").build(),
            a_node("a2").in_leaf("su-2", "spine-1").not_ready().build(),
            a_node("r1").with_gpus(8, "rtx-pro-6000").in_leaf("rtx-su-1", "rtx-spine").build(),
        ],
        [a_root(), a_queue("vision")],
        [a_job("vision/train").of(1, 8).running_on("a1")],
    )
    view = views.cluster(decided(snap, binds={}, queues={"vision/train": "vision"}))
    spines = {s.name: s for s in view.spines}
    assert list(spines) == ["rtx-spine", "spine-1"]
    one = spines["spine-1"]
    assert (one.leaves, one.nodes, one.gpus, one.allocated, one.free, one.whole_free_nodes, one.not_ready) == (
        ["su-1", "su-2"], 2, 16, 8, 8, 1, 1)  # fmt: skip
    assert one.gpu_types == ["b200"]
    assert spines["rtx-spine"].gpu_types == ["rtx-pro-6000"]
    assert view.model_dump(by_alias=True)["spines"][1]["notReady"] == 1


def test_the_jobs_of_pod_groups_are_named_by_their_kind() -> None:
    snap = snapshot([a_node("n1").build()], [a_root(), a_queue("lab")],
                    [a_job("lab/jobs/sweep").of(2, 2).running_on("n1", "n1"), a_job("lab/pods/notebook").of(1, 1).running_on("n1")])  # fmt: skip
    view = views.cluster(decided(snap, binds={}, queues={"lab/jobs/sweep": "lab", "lab/pods/notebook": "lab"}))
    assert [(j.kind, j.name, j.gpus, j.replicas) for j in view.nodes[0].jobs] == [("Job", "sweep", 4, 2),
                                                                                  ("Pod", "notebook", 1, 1)]  # fmt: skip


def test_a_scheduled_cycle_shows_its_binds_on_the_nodes() -> None:
    snap = snapshot([a_node("n1").build(), a_node("n2").build()], [a_root(16), a_queue("vision").with_share(16)],
                    [a_job("vision/train").of(2, 8)])  # fmt: skip
    decisions = schedule(snap, model.Policy(), now=0.0)
    view = views.cluster(model.CycleRecord(snap, decisions, model.Policy(), 0.0))
    assert sorted((n.name, [(j.name, j.queue, j.gpus) for j in n.jobs]) for n in view.nodes) == [
        ("n1", [("train", "vision", 8)]), ("n2", [("train", "vision", 8)])]  # fmt: skip


def test_leaf_queues_get_distinct_colours_and_parents_none() -> None:
    snap = snapshot(
        [a_node("n1").build()],
        [a_root(), QueueBuilder("research", parent="root"), a_queue("vision").under("research"),
         a_queue("speech").under("research"), a_queue("robotics").under("research"), a_queue("industry")],
        [],
    )  # fmt: skip
    listed = {q.name: q for q in views.queues(model.CycleRecord(snap, schedule(snap, model.Policy(), now=0.0),
                                                                 model.Policy(), 0.0))}  # fmt: skip
    assert {name for name, q in listed.items() if q.leaf} == {"vision", "speech", "robotics", "industry"}
    assert listed["root"].colour is None
    assert listed["research"].colour is None
    leaf_colours = [q.colour for q in listed.values() if q.leaf]
    assert len(set(leaf_colours)) == 4
    assert set(leaf_colours) <= set(views.PALETTE)


def test_a_queue_keeps_its_colour_whatever_the_order_and_the_palette_comes_first() -> None:
    names = ["t-vision", "t-speech", "t-robotics", "soofi"]
    assert views.colours(names) == views.colours(reversed(names))
    alone = views.colours(["t-vision"])["t-vision"]
    assert alone == views.PALETTE[zlib.crc32(b"t-vision") % len(views.PALETTE)]


@given(st.sets(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12), max_size=60))
def test_colours_are_distinct_valid_and_deterministic_for_any_set_of_queues(names: set[str]) -> None:
    given_colours = views.colours(names)
    assert set(given_colours) == names
    assert len(set(given_colours.values())) == len(names)
    assert all(re.fullmatch(r"#[0-9A-F]{6}", colour) for colour in given_colours.values())
    if len(names) <= len(views.PALETTE):
        assert set(given_colours.values()) <= set(views.PALETTE)
    assert views.colours(sorted(names, reverse=True)) == given_colours


def test_the_page_loads_nothing_from_elsewhere_and_keeps_the_token_out_of_the_address() -> None:
    assert not re.search(r"(?:src|href)\s*=|https?://|@import|url\(", ui.PAGE)
    assert "fetch(path, { headers: { Authorization: `Bearer ${token}` } })" in ui.PAGE
    assert 'history.replaceState(null, "", location.pathname' in ui.PAGE


def test_a_node_names_a_stopping_pod_as_a_pod_and_a_growth_replica_as_its_job() -> None:
    assert views._named(model.JobKey("t-a/terminating/vision-0")) == ("t-a", "Pod (stopping)", "vision-0")
    assert views._named(model.JobKey("t-a/elastic#3")) == ("t-a", "TrainingJob", "elastic")
    assert views._named(model.JobKey("t-a/jobs/batch")) == ("t-a", "Job", "batch")
