"""The live operator: kopf feeds the store, a loop schedules, the binder applies.

``run`` is what ``leitstand run`` awaits. Kopf handlers only record watch
events into the store; the scheduling loop wakes on a change (debounced) or on
its timer, builds a core snapshot from the store, calls ``core.schedule``,
and hands the decisions to the binder.
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

import kopf

from leitstand.core import model
from leitstand.core.scheduling import schedule
from leitstand.kube import binder, resources, snapshots
from leitstand.kube.client import Client
from leitstand.kube.kubeconfig import Connection
from leitstand.kube.store import Store

logger = logging.getLogger("leitstand.controller")


def _registry(connection: Connection, store: Store) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=connection.server,
            ca_data=connection.ca_pem,
            insecure=connection.insecure,
            scheme="Bearer" if connection.bearer_token() else None,
            token=connection.bearer_token(),
            certificate_data=connection.client_cert_pem,
            private_key_data=connection.client_key_pem,
            default_namespace=connection.namespace,
        )

    def feeder(kind: str) -> Any:
        def feed(event: kopf.RawEvent, **_: Any) -> None:
            store.apply(kind, event["type"] or "ADDED", dict(event["object"]))

        return feed

    kopf.on.event("v1", "pods", registry=registry)(feeder("Pod"))
    kopf.on.event("v1", "nodes", registry=registry)(feeder("Node"))
    kopf.on.event(resources.GROUP, resources.VERSION, "gpuquotas", registry=registry)(feeder("GPUQuota"))
    return registry


async def cycle(client: Client, store: Store, settings: snapshots.Settings, *, concurrency: int) -> model.Decisions:
    """One scheduling cycle against the store; returns what the core decided."""
    snapshot, pod_of_job = snapshots.build(store.nodes.values(), store.quotas.values(), store.pods.values(), settings)
    policy = model.Policy(topology_levels=settings.levels)
    decisions = schedule(snapshot, policy, now=time.time())
    binds = []
    for bind in decisions.binds:
        pod = pod_of_job.get(bind.job)
        if pod is None:
            continue
        meta = pod["metadata"]
        binds.append(binder.PodBind(meta["namespace"], meta["name"], meta.get("uid"), bind.nodes[0]))
    for outcome in await binder.bind_all(client, binds, concurrency=concurrency):
        target = f"{outcome.bind.namespace}/{outcome.bind.name}"
        if outcome.ok:
            logger.info("bound %s to %s", target, outcome.bind.node)
        else:
            logger.warning("binding %s to %s failed: %s", target, outcome.bind.node, outcome.reason)
    return decisions


async def schedule_forever(
    client: Client, store: Store, settings: snapshots.Settings, *, interval: float, debounce: float, concurrency: int
) -> None:
    """The scheduling loop: one cycle per burst of changes, or every ``interval`` seconds."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(store.changed.wait(), timeout=interval)
        await asyncio.sleep(debounce)
        store.changed.clear()
        try:
            await cycle(client, store, settings, concurrency=concurrency)
        except Exception:
            logger.exception("scheduling cycle failed; retrying on the next change")


async def run(
    connection: Connection,
    *,
    interval: float = 5.0,
    debounce: float = 0.2,
    concurrency: int = 16,
    stop: asyncio.Event | None = None,
) -> None:
    """Runs the operator until ``stop`` is set (or forever)."""
    store = Store()
    settings = snapshots.Settings()
    registry = _registry(connection, store)
    stop_flag = stop or asyncio.Event()
    async with Client(connection) as client:
        loop_task = asyncio.create_task(
            schedule_forever(client, store, settings, interval=interval, debounce=debounce, concurrency=concurrency)
        )
        try:
            await kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop_flag)
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
