"""Fairness that remembers: each queue's decayed over-quota usage, kept across cycles and restarts.

Every cycle ``Ledger.advance`` decays each queue's usage since the cycle before
and adds the GPUs it held above its guarantees meanwhile (``fairshare.remember``,
the core's pure arithmetic); the snapshot's queues carry the result, and the
fair share lowers the over-quota weight of a queue that used more than its share
(``fairshare.remembered_weights``). The API server is the store: usage goes into
each GPUQuota's ``status.usage`` at most every ``write_interval`` seconds, and a
new leader (after a restart or a failover) starts from what it finds there,
decayed over the time since it was written. The time the operator was down adds
nothing.
"""

import math
from collections.abc import Mapping

from leitstand.controller.jobs import rfc3339
from leitstand.core import fairshare, model
from leitstand.kube import bodies, resources
from leitstand.kube.objects import GPUQuota, status


class Ledger:
    """Decayed over-quota GPU-seconds per queue; ``half_life`` 0 keeps none (the fair share forgets)."""

    def __init__(self, half_life: float, write_interval: float) -> None:
        self.half_life = half_life
        self.write_interval = write_interval
        self.usage: dict[model.QueueName, float] = {}
        self.over_quota: dict[model.QueueName, int] = {}  # GPUs held above the guarantees after the last cycle
        self.since: float | None = None  # when ``usage`` was last advanced
        self.written: dict[model.QueueName, float] = {}  # when each queue's usage was last put in its status
        self.last: dict[model.QueueName, resources.Usage] = {}  # and what it was, whatever the watch shows now

    def advance(self, quotas: Mapping[str, GPUQuota], now: float) -> dict[model.QueueName, float]:
        """Every queue's usage as of ``now``: carried from the last cycle, else read from its status."""
        if self.half_life <= 0:
            return {}
        if self.since is not None:
            self.usage = fairshare.remember(self.usage, self.over_quota, now - self.since, self.half_life)
        self.since = now
        known = {model.QueueName(name) for name in quotas}
        self.usage = {name: value for name, value in self.usage.items() if name in known}
        for name, body in quotas.items():
            queue = model.QueueName(name)
            if queue not in self.usage:
                stored, at = _stored(body)
                self.usage[queue] = fairshare.remember({queue: stored}, {}, max(now - at, 0.0), self.half_life)[queue]
        return dict(self.usage)

    def forget(self) -> None:
        """Drop what this replica counted (it stopped leading): a later term starts from the statuses."""
        self.usage, self.over_quota, self.since, self.written, self.last = {}, {}, None, {}, {}

    def record(self, decisions: model.Decisions) -> None:
        """The GPUs each queue holds above its guarantees after this cycle, counted until the next."""
        self.over_quota = {
            name: sum(max(numbers.allocated - numbers.guaranteed, 0) for numbers in per_type.values())
            for name, per_type in decisions.queues.items()
        }

    def status(self, name: str, body: GPUQuota, now: float) -> resources.Usage | None:
        """The ``status.usage`` to write for queue ``name``: the usage now when this replica last wrote it more
        than the write interval ago (or never did, and the status holds none or another value), else what it
        wrote last; a status that stays at zero is not rewritten."""
        if self.half_life <= 0:
            return None
        queue = model.QueueName(name)
        last = self.last.get(queue)
        if last is not None and now - self.written.get(queue, -math.inf) < self.write_interval:
            return last
        value = round(self.usage.get(queue, 0.0))
        stored = status(body).get("usage") or {}
        if value == 0 and stored.get("overQuotaGPUSeconds") == 0:
            try:
                return self._wrote(queue, resources.Usage.model_validate(stored), now)
            except ValueError:
                pass  # not what this version writes: replaced below
        return self._wrote(
            queue, resources.Usage.model_validate({"overQuotaGPUSeconds": value, "updatedAt": rfc3339(now)}), now
        )

    def _wrote(self, queue: model.QueueName, usage: resources.Usage, now: float) -> resources.Usage:
        self.last[queue], self.written[queue] = usage, now
        return usage


def _stored(body: GPUQuota) -> tuple[float, float]:
    """The usage a GPUQuota's status holds and as of when; (0, 0) when there is none to read."""
    try:
        stored = resources.Usage.model_validate(status(body).get("usage") or {})
        at = bodies.timestamp(stored.updated_at)
    except ValueError:  # none, or not what this version writes
        return 0.0, 0.0
    return float(stored.over_quota_gpu_seconds), at if at is not None else 0.0
