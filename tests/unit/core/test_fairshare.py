"""Fair share by water-filling: the worked examples of ARCHITECTURE.md and the tree."""

import pytest

from leitstand.core import fairshare
from leitstand.core.model import GPUType, QueueName
from tests.unit.core.builders import QueueBuilder, a_queue, a_root

B200 = GPUType("b200")


def shares(queues: list[QueueBuilder], capacity: int, demand: dict[str, int]) -> dict[str, int]:
    result = fairshare.fair_shares(
        [q.build() for q in queues], {B200: capacity}, {QueueName(k): {B200: v} for k, v in demand.items()}
    )
    return {name: per_type.get(B200, 0) for name, per_type in result.items()}


ABC = [
    a_root(),
    a_queue("A").with_share(400, limit=1000, weight=1),
    a_queue("B").with_share(200, limit=500, weight=3),
    a_queue("C").with_share(100, limit=1000, weight=1),
]


def test_the_worked_example_gives_488_462_50() -> None:
    assert shares(ABC, 1000, {"A": 800, "B": 600, "C": 50}) == {"root": 1000, "A": 488, "B": 462, "C": 50}


def test_when_c_wants_300_the_split_is_460_380_160() -> None:
    assert shares(ABC, 1000, {"A": 800, "B": 600, "C": 300}) == {"root": 1000, "A": 460, "B": 380, "C": 160}


def test_a_limit_caps_the_share_and_the_rest_is_split_again() -> None:
    queues = [a_root(), a_queue("A").with_share(0, limit=100), a_queue("B").with_share(0)]
    assert shares(queues, 1000, {"A": 900, "B": 900}) == {"root": 1000, "A": 100, "B": 900}


def test_weight_zero_takes_nothing_beyond_its_guarantee() -> None:
    queues = [a_root(), a_queue("A").with_share(10, weight=0), a_queue("B").with_share(0)]
    assert shares(queues, 100, {"A": 100, "B": 50}) == {"root": 100, "A": 10, "B": 50}


def test_guarantees_above_capacity_are_scaled_down_in_proportion() -> None:
    queues = [a_root(), a_queue("A").with_share(300), a_queue("B").with_share(100)]
    assert shares(queues, 200, {"A": 300, "B": 100}) == {"root": 200, "A": 150, "B": 50}


def test_a_parent_divides_its_own_share_among_its_children() -> None:
    queues = [
        a_root(),
        a_queue("research").with_share(200, weight=1).for_namespaces(),
        a_queue("industry").with_share(600, weight=3).for_namespaces(),
        a_queue("soofi").under("research").with_share(100),
        a_queue("lab").under("research").with_share(0),
        a_queue("acme").under("industry").with_share(300, weight=2),
        a_queue("helix").under("industry").with_share(100, weight=1),
    ]
    result = shares(queues, 1000, {"soofi": 150, "lab": 400, "acme": 900, "helix": 900})
    assert (result["research"], result["industry"]) == (250, 750)  # 200 + 50, 600 + 150: the 200 left, 1 : 3
    assert (result["soofi"], result["lab"]) == (150, 100)  # soofi capped by its demand, lab takes the rest
    assert (result["acme"], result["helix"]) == (533, 217)  # 300 + 233.3, 100 + 116.7; the odd GPU by remainder


@pytest.mark.parametrize("order", [1, -1])
def test_the_result_does_not_depend_on_the_order_of_queues(order: int) -> None:
    queues = [q.build() for q in ABC][::order]
    result = fairshare.fair_shares(
        queues, {B200: 1000}, {QueueName("A"): {B200: 800}, QueueName("B"): {B200: 600}, QueueName("C"): {B200: 300}}
    )
    assert result[QueueName("B")][B200] == 380


def test_queues_caught_in_a_parent_cycle_get_nothing() -> None:
    queues = [a_root(), a_queue("x").under("y"), a_queue("y").under("x"), a_queue("ok")]
    assert shares(queues, 100, {"x": 50, "y": 50, "ok": 10}) == {"root": 10, "x": 0, "y": 0, "ok": 10}
