"""The live operator: kopf feeds the store, a loop schedules, the binder applies.

``run`` is what ``leitstand run`` awaits. Kopf handlers only record watch
events into the store; the scheduling loop wakes on a change (debounced) or on
its timer, takes a snapshot, asks the core for decisions, and hands them to the
binder. Scheduling is the foundation's first-fit by GPU count until the full
core (fair share, gangs, topology) replaces it.
"""

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from leitstand.core import firstfit
from leitstand.kube import binder
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

    @kopf.on.event("v1", "pods", registry=registry)
    def pod_event(event: kopf.RawEvent, **_: Any) -> None:
        store.apply("Pod", event["type"] or "ADDED", dict(event["object"]))

    @kopf.on.event("v1", "nodes", registry=registry)
    def node_event(event: kopf.RawEvent, **_: Any) -> None:
        store.apply("Node", event["type"] or "ADDED", dict(event["object"]))

    return registry


async def schedule_forever(
    client: Client, store: Store, *, interval: float, debounce: float, concurrency: int
) -> None:
    """The scheduling loop: one cycle per change burst or per ``interval`` seconds."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(store.changed.wait(), timeout=interval)
        await asyncio.sleep(debounce)
        store.changed.clear()
        nodes, pods = store.snapshot()
        binds = firstfit.place(nodes, pods)
        if not binds:
            continue
        outcomes = await binder.bind_all(client, binds, concurrency=concurrency)
        for outcome in outcomes:
            if outcome.ok:
                logger.info("bound %s to %s", outcome.bind.pod, outcome.bind.node)
            else:
                logger.warning(
                    "binding %s to %s failed: %s",
                    outcome.bind.pod,
                    outcome.bind.node,
                    outcome.reason,
                )


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
    registry = _registry(connection, store)
    stop_flag = stop or asyncio.Event()
    async with Client(connection) as client:
        loop_task = asyncio.create_task(
            schedule_forever(client, store, interval=interval, debounce=debounce, concurrency=concurrency)
        )
        try:
            await kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop_flag)
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
