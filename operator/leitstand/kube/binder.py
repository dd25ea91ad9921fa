"""Applies bind decisions through the ``pods/binding`` subresource.

Binds run concurrently on the event loop with at most ``concurrency`` in
flight. Each outcome is reported, never raised, so one failed bind cannot hide
the others; the caller decides what a failure means for the pod's gang. A pod
already bound to the same node (409 Conflict, "already assigned to node") counts
as bound, so repeating a bind is harmless; bound elsewhere, it is a failure with
the API server's reason.
"""

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from leitstand.kube.client import ApiError, Client, TransportError


@dataclass(frozen=True, slots=True)
class PodBind:
    """Bind the pod ``namespace/name`` (this incarnation: ``uid``) to ``node``."""

    namespace: str
    name: str
    uid: str | None
    node: str


@dataclass(frozen=True, slots=True)
class Outcome:
    bind: PodBind
    ok: bool
    reason: str = ""


async def bind_all(
    client: Client,
    binds: Iterable[PodBind],
    *,
    concurrency: int = 16,
    allowed: Callable[[], bool] = lambda: True,
) -> list[Outcome]:
    """Binds every pod of ``binds``; returns one Outcome per bind, in input order.

    ``allowed`` is asked right before each request (leadership): a bind waiting
    for a slot when it turns false is not sent. A pod already bound to the same
    node counts as bound, so repeating a bind is harmless.
    """
    limit = asyncio.Semaphore(concurrency)

    async def one(bind: PodBind) -> Outcome:
        async with limit:
            if not allowed():
                return Outcome(bind, ok=False, reason="not the leader")
            try:
                await client.bind(bind.namespace, bind.name, bind.node, uid=bind.uid)
            except ApiError as error:
                if error.status == 409 and f'already assigned to node "{bind.node}"' in error.message:
                    return Outcome(bind, ok=True)
                return Outcome(bind, ok=False, reason=f"{error.status} {error.reason}: {error.message}")
            except TransportError as error:
                return Outcome(bind, ok=False, reason=type(error).__name__)
        return Outcome(bind, ok=True)

    return list(await asyncio.gather(*(one(bind) for bind in binds)))
