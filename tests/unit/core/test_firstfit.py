"""First-fit placement: scenarios in, binds out."""

import pytest

from leitstand.core import firstfit
from leitstand.core.model import Bind, Node, NodeName, Pod, PodKey


def a_node(name: str, gpus: int = 8, *, ready: bool = True) -> Node:
    return Node(NodeName(name), gpus, "NVIDIA-B200", ready)


def a_pod(key: str, gpus: int, node: str | None = None) -> Pod:
    return Pod(PodKey(key), gpus, NodeName(node) if node else None)


@pytest.mark.parametrize(
    ("nodes", "pods", "expected"),
    [
        pytest.param([a_node("n1")], [a_pod("ns/a", 8)], [Bind(PodKey("ns/a"), NodeName("n1"))], id="fits"),
        pytest.param([a_node("n1")], [a_pod("ns/a", 9)], [], id="too-big-for-any-node"),
        pytest.param(
            [a_node("n1"), a_node("n2")],
            [a_pod("ns/held", 6, "n1"), a_pod("ns/a", 4)],
            [Bind(PodKey("ns/a"), NodeName("n2"))],
            id="bound-pods-use-their-gpus",
        ),
        pytest.param([a_node("n1", ready=False)], [a_pod("ns/a", 1)], [], id="not-ready-nodes-are-skipped"),
        pytest.param(
            [a_node("n1")],
            [a_pod("ns/b", 5), a_pod("ns/a", 5)],
            [Bind(PodKey("ns/a"), NodeName("n1"))],
            id="never-over-commits",
        ),
    ],
)
def test_first_fit_places_waiting_pods(nodes: list[Node], pods: list[Pod], expected: list[Bind]) -> None:
    assert firstfit.place(nodes, pods) == expected


def test_the_same_input_in_any_order_gives_the_same_binds() -> None:
    nodes = [a_node(f"n{i}", 8) for i in range(4)]
    pods = [a_pod(f"ns/p{i}", g) for i, g in enumerate([3, 5, 8, 2, 7, 1])]
    assert firstfit.place(nodes, pods) == firstfit.place(list(reversed(nodes)), list(reversed(pods)))
