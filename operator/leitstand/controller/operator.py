"""The live operator: informers feed the store, a loop schedules, the writes follow.

One owner per responsibility:
- **kopf** runs the operator process: its startup and shutdown, the stop flag,
  logging in (and again when a credential expires or is refused).
- **informers** (``kube.informers``) own every watch: nodes, pods, TrainingJobs and
  GPUQuotas are listed, watched from the list's resourceVersion with bookmarks,
  and listed again after a lost watch, which replaces the kind in the store, so an
  object deleted while the watch was down leaves with the relist. (kopf's own
  watches cannot do that: after a gap kopf yields what still exists and never
  what vanished.)
- the **store** (``kube.store``) holds what the informers last saw, nothing else.
- the **scheduling loop** wakes on a change (debounced) or on its timer and runs a
  cycle (``scheduler``) only while this replica leads; every write goes through the applier.

Before the first cycle every kind is listed, so the first decisions see the whole cluster.
"""

import asyncio
import contextlib
import functools
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import kopf

from leitstand.controller.configuration import Configuration
from leitstand.controller.leadership import Leadership
from leitstand.controller.scheduler import Scheduler
from leitstand.core import model
from leitstand.kube import bodies, informers, resources
from leitstand.kube.client import Client
from leitstand.kube.connection import Connection, Credential
from leitstand.kube.store import Store
from leitstand.metrics.observing import SchedulerMetrics

logger = logging.getLogger("leitstand.controller")

INFORMED = (  # kind, collection path: every kind the operator reads, each watched by kube.informers
    ("Node", "/api/v1/nodes"),
    ("Pod", "/api/v1/pods"),
    ("GPUQuota", f"/apis/{resources.API_VERSION}/gpuquotas"),
    ("TrainingJob", f"/apis/{resources.API_VERSION}/trainingjobs"),
    # the owners of pod groups, read for their gang sizes (PyTorchJob, PodGroup and JobSet are served only
    # once their CRD or API is: until then the informer finds none and looks again later)
    *((kind, path.replace("/{ns}", "")) for kind, path in bodies.OWNER_COLLECTIONS),
)


@dataclass
class Health:
    """What the probes report: synced once the store was seeded; leading as elected."""

    synced: bool = False
    leading: bool = False
    cycles: int = 0
    latest: model.CycleRecord | None = None
    pod_estimates: dict[model.JobKey, str] = field(default_factory=dict)  # the latest cycle's, for pod gangs
    store: Store | None = None
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


def _registry(connection: Connection) -> kopf.OperatorRegistry:
    """kopf's part: settings at startup and logging in; it watches nothing (the informers do)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60

    handed: list[Credential] = []  # what kopf was last given: it logs in again only when that expired or was refused

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        credentials = connection.credentials
        refresh = functools.partial(credentials.refresh, handed[-1]) if handed else credentials.current
        credential = await asyncio.to_thread(refresh)
        handed[:] = [credential]
        scheme, _blank, token = (credential.authorization or "").partition(" ")
        return kopf.ConnectionInfo(
            server=connection.server,
            ca_path=connection.ca_file,
            insecure=connection.insecure,
            scheme=scheme or None,
            token=token or None,
            certificate_path=credential.cert_file,
            private_key_path=credential.key_file,
            default_namespace=connection.namespace,
            proxy_url=connection.proxy,
            expiration=credential.expiry,
        )

    return registry


async def seed(client: Client, store: Store) -> dict[str, str]:
    """Lists every kind into the store; returns the resourceVersions to watch from."""
    return {kind: await informers.list_into(client, store, kind, path) for kind, path in INFORMED}


async def schedule_forever(
    scheduler: Scheduler, store: Store, health: Health, config: Configuration, wake: asyncio.Event
) -> None:
    """The scheduling loop: one cycle per burst of changes, or every ``cycleIntervalSeconds``."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_either(store.changed, wake), timeout=config.cycle_interval_seconds)
        await asyncio.sleep(config.debounce_seconds)
        store.changed.clear()
        wake.clear()
        try:
            outcome = await scheduler.run_once()
        except Exception:
            logger.exception("scheduling cycle failed; retrying on the next change")
            continue
        if outcome is not None:
            health.cycles += 1
            health.latest = outcome.latest
            health.pod_estimates = outcome.pod_estimates
            if outcome.bound_pods or outcome.decisions.evictions:
                logger.info(
                    "cycle: bound %d pods, %d evictions, %d waiting, %.0f ms",
                    outcome.bound_pods, len(outcome.decisions.evictions), len(outcome.decisions.pending),
                    outcome.seconds * 1000,
                )  # fmt: skip


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    tasks = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def run(
    connection: Connection,
    config: Configuration,
    *,
    health: Health,
    stop: asyncio.Event,
    metrics: SchedulerMetrics | None = None,
) -> None:
    """Runs the operator until ``stop`` is set."""
    store = Store()
    health.store = store
    registry = _registry(connection)
    # the user agent names this replica: the API's managedFields then record which replica bound each pod
    async with Client(connection, user_agent=f"leitstand-{health.identity}") as client:
        versions = await seed(client, store)
        health.synced = True
        watches = [
            asyncio.create_task(informers.inform(client, store, kind, path, resource_version=versions[kind]))
            for kind, path in INFORMED
        ]
        leadership = Leadership(client, config.leader_election, health.identity)

        def leading() -> bool:
            health.leading = leadership.leading() if config.leader_election.enabled else True
            if metrics is not None:
                metrics.observe_leader(health.leading)
            return health.leading

        scheduler = Scheduler(client, store, config, leading, metrics)
        loop = asyncio.create_task(schedule_forever(scheduler, store, health, config, leadership.changed))
        campaign = asyncio.Event()  # set after the last writes: the lease is held until they are sent
        election = asyncio.create_task(leadership.run(campaign)) if config.leader_election.enabled else None
        try:
            await kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop)
        finally:
            stop.set()
            for task in (loop, *watches):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(TimeoutError):  # what the last cycle decided, written while still leading
                await asyncio.wait_for(scheduler.applier.drain(), timeout=2)
            await scheduler.applier.close()
            scheduler.forecaster.close()
            campaign.set()
            if election is not None:  # let it give the lease up, so a standby takes over at once
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(election, timeout=5)
