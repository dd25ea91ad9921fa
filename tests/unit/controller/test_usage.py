"""The usage ledger: decayed over-quota usage across cycles, written to GPUQuota statuses at a bounded rate,
read back by a new leader."""

import pytest

from leitstand.controller.jobs import rfc3339
from leitstand.controller.usage import Ledger
from leitstand.core import model
from leitstand.kube.objects import Body

NOW = 1_800_000_000.0
DAY = 86_400.0
WEEK = 7 * DAY
A = model.QueueName("a")


def a_quota(usage: Body | None = None) -> Body:
    return {"metadata": {"name": "a"}, "spec": {}, "status": {"usage": usage} if usage else {}}


def holding(over: int) -> model.Decisions:
    numbers = model.QueueStatus(guaranteed=8, limit=None, fair_share=8 + over, allocated=8 + over, pending=0)
    return model.Decisions((), (), (), (), {A: {model.GPUType("b200"): numbers}}, {})


def test_usage_grows_by_what_is_held_above_the_guarantee_and_halves_every_half_life() -> None:
    ledger = Ledger(WEEK, 60)
    assert ledger.advance({"a": a_quota()}, NOW) == {A: 0.0}
    ledger.record(holding(16))  # 16 GPUs over quota from now on
    assert ledger.advance({"a": a_quota()}, NOW + 60)[A] == pytest.approx(16 * 60, rel=1e-4)
    ledger.record(holding(0))
    assert ledger.advance({"a": a_quota()}, NOW + 60 + WEEK)[A] == pytest.approx(8 * 60, rel=1e-4)


def test_a_new_leader_starts_from_the_status_decayed_since_it_was_written() -> None:
    stored = a_quota({"overQuotaGPUSeconds": 1000, "updatedAt": rfc3339(NOW - WEEK)})
    assert Ledger(WEEK, 60).advance({"a": stored}, NOW)[A] == pytest.approx(500.0)
    unreadable = a_quota({"overQuotaGPUSeconds": "lots", "updatedAt": "then"})
    assert Ledger(WEEK, 60).advance({"a": unreadable}, NOW) == {A: 0.0}


def test_the_status_is_written_at_most_every_interval_and_a_lost_lead_forgets() -> None:
    ledger = Ledger(WEEK, 60)
    body = a_quota()
    ledger.advance({"a": body}, NOW)
    ledger.record(holding(10))
    ledger.advance({"a": body}, NOW + 30)
    first = ledger.status("a", body, NOW + 30)
    assert first is not None
    assert first.over_quota_gpu_seconds == 300
    body = a_quota(first.model_dump(mode="json", by_alias=True))
    ledger.advance({"a": body}, NOW + 60)
    assert ledger.status("a", body, NOW + 60) == first  # 30 s later: the stored one stays
    ledger.advance({"a": body}, NOW + 100)
    later = ledger.status("a", body, NOW + 100)
    assert later is not None
    assert later.over_quota_gpu_seconds == pytest.approx(1000, abs=1)
    ledger.forget()
    assert ledger.advance({"a": body}, NOW + 100)[A] == pytest.approx(300, abs=1)  # from the status, not memory


def test_a_half_life_of_zero_remembers_nothing_and_writes_nothing() -> None:
    ledger = Ledger(0, 60)
    assert ledger.advance({"a": a_quota()}, NOW) == {}
    assert ledger.status("a", a_quota(), NOW) is None
