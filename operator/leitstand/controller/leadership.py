"""Lease-based leader election (``coordination.k8s.io/v1``): one active scheduler at a time.

Like client-go's leader election: a candidate takes the Lease when it is free,
released, or not renewed for ``leaseDurationSeconds`` *as observed locally*
(no trust in other machines' clocks), and renews it every
``renewIntervalSeconds``. Writes use the Lease's resourceVersion, so two
candidates can never both win the same round.

``leading()`` is what guards every bind: it is true only while the last
successful renewal is younger than the lease duration minus one renew
interval, so a leader cut off from the API server stops binding before anyone
else may take over.
"""

import asyncio
import contextlib
import datetime
import logging
import time
from typing import cast

from leitstand.controller.configuration import LeaderElection
from leitstand.kube.client import ApiError, Client
from leitstand.kube.objects import Lease, LeaseSpec

logger = logging.getLogger("leitstand.leadership")


def _microtime(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Leadership:
    """One candidate's view of the election; ``run`` campaigns until stopped."""

    def __init__(self, client: Client, config: LeaderElection, identity: str) -> None:
        self.client = client
        self.config = config
        self.identity = identity
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{config.namespace}/leases/{config.lease_name}"
        self._renewed = float("-inf")
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self.changed = asyncio.Event()

    def leading(self) -> bool:
        """True while this candidate holds a lease it renewed recently enough to act on."""
        margin = self.config.lease_duration_seconds - self.config.renew_interval_seconds
        return time.monotonic() - self._renewed < margin

    def _spec(self, transitions: int, acquired: str | None) -> LeaseSpec:
        now = _microtime(datetime.datetime.now(datetime.UTC))
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.config.lease_duration_seconds),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One round of the election; True when this candidate holds the lease afterwards."""
        try:
            lease = cast(Lease, await self.client.get(self.path))
        except ApiError as error:
            if error.status != 404:
                raise
            body: Lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.config.lease_name, "namespace": self.config.namespace},
                "spec": self._spec(0, None),
            }
            try:
                await self.client.create(self.path.rsplit("/", 1)[0], dict(body))
            except ApiError as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime")))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        expired = time.monotonic() - self._observed_at > float(spec.get("leaseDurationSeconds") or 0)
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else None
        lease["spec"] = self._spec(transitions, acquired)
        try:
            await self.client.replace(self.path, dict(lease))
        except ApiError as conflict:
            if conflict.status == 409:
                return False
            raise
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Campaigns and renews until ``stop`` is set; then gives the lease up."""
        was_leading = False
        while not stop.is_set():
            started = time.monotonic()
            try:
                if await self.try_acquire_or_renew():
                    self._renewed = started
            except Exception as error:  # an API outage must not end the campaign
                logger.warning("leader election round failed: %s", error)
            if self.leading() != was_leading:
                was_leading = self.leading()
                logger.warning("%s leadership (%s)", "acquired" if was_leading else "lost", self.identity)
                self.changed.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.renew_interval_seconds)
        await self.release()

    async def release(self) -> None:
        """Gives the lease up at once (when held), so a standby need not wait for it to expire."""
        if not self.leading():
            return
        self._renewed = float("-inf")
        try:
            lease = cast(Lease, await self.client.get(self.path))
            spec = lease.get("spec")
            if spec is not None and spec.get("holderIdentity") == self.identity:
                spec["holderIdentity"] = ""
                await self.client.replace(self.path, dict(lease))
        except Exception as error:
            logger.warning("releasing the lease failed: %s", error)
