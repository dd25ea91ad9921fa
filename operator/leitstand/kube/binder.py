"""Applies bind decisions through the ``pods/binding`` subresource.

Binds run concurrently on the event loop with at most ``concurrency`` in
flight. Each outcome is reported, never raised, so one failed bind cannot hide
the others; the caller decides what a failure means for the pod's gang.
Binding is idempotent from the scheduler's view: a pod already bound answers
409 Conflict, which is reported as a failure with that reason.
"""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from leitstand.core.model import Bind
from leitstand.kube.client import ApiError, Client


@dataclass(frozen=True, slots=True)
class Outcome:
    bind: Bind
    ok: bool
    reason: str = ""


async def bind_all(client: Client, binds: Iterable[Bind], *, concurrency: int = 16) -> list[Outcome]:
    """Binds every pod of ``binds``; returns one Outcome per bind, in input order."""
    limit = asyncio.Semaphore(concurrency)

    async def one(bind: Bind) -> Outcome:
        namespace, name = bind.pod.split("/", 1)
        async with limit:
            try:
                await client.bind(namespace, name, bind.node)
            except ApiError as error:
                return Outcome(bind, ok=False, reason=f"{error.status} {error.reason}")
            except httpx.HTTPError as error:
                return Outcome(bind, ok=False, reason=type(error).__name__)
        return Outcome(bind, ok=True)

    return list(await asyncio.gather(*(one(bind) for bind in binds)))
