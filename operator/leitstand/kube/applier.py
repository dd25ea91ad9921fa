"""Every write the operator makes, and what it assumes until the watches confirm it.

The scheduling loop decides from one view of the store and says what to write
(``Write``: binds, pod and Service creation, deletions, finalizers, status
patches, Events); the ``Applier`` performs the writes concurrently, at most
``concurrency`` in flight, and returns one ``Outcome`` per write. A failure is
reported, never raised, so one refused write cannot hide the others; answers
that mean "already done" (a 409 on create, a 404 on delete) count as done.

What a write changed but no watch has reported yet (a pod just bound, a
nomination just stored) lives in the applier's ``Overlay``: the next view is read
through it, and the store stays exactly what the watches said.

Events are best effort, named uniquely as client-go's recorder names them.
"""

import asyncio
import datetime
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from leitstand.kube.client import ApiError, Client, PatchType, TransportError
from leitstand.kube.objects import Body, Pod, pod_spec, pod_status

logger = logging.getLogger("leitstand.kube")
COMPONENT = "leitstand"
Verb = Literal["create", "delete", "patch"]


@dataclass(frozen=True, slots=True)
class PodBind:
    """Bind the pod ``namespace/name`` (this incarnation: ``uid``) to ``node``."""

    namespace: str
    name: str
    uid: str | None
    node: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, eq=False)
class Write:
    """One request: ``verb`` on ``path`` with ``body``; ``done`` lists the answers that mean it is done already."""

    verb: Verb
    path: str
    body: Any = None
    patch_type: PatchType = "merge"
    grace_seconds: int | None = None
    done: tuple[int, ...] = ()
    best_effort: bool = False  # an Event: a failure is logged at debug level and never counted


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one write (or one bind)."""

    write: Write | PodBind
    ok: bool
    reason: str = ""


SETTLED = (404, 409)  # gone, already there, or changed meanwhile: nothing to warn about, the next cycle looks again


def create(path: str, body: Body) -> Write:
    return Write("create", path, body, done=SETTLED)


def delete(path: str, *, grace_seconds: int | None = None) -> Write:
    return Write("delete", path, grace_seconds=grace_seconds, done=SETTLED)


def patch(path: str, body: Any, *, patch_type: PatchType = "merge") -> Write:
    return Write("patch", path, body, patch_type=patch_type, done=SETTLED)


def event(involved: Mapping[str, Any], event_type: str, reason: str, message: str, *, now: float) -> Write:
    """A core/v1 Event about ``involved`` (a full object body with apiVersion and kind)."""
    meta = involved["metadata"]
    namespace = meta.get("namespace") or "default"
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", "v1"),
            "kind": involved.get("kind", ""),
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    return Write("create", f"/api/v1/namespaces/{namespace}/events", body, best_effort=True)


@dataclass
class Overlay:
    """Pods as this replica changed them and the watches have not reported yet, by ``namespace/name``.

    An entry goes once the store's copy shows the change, or the pod is gone or
    was replaced (another uid).
    """

    nodes: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # key -> (uid, nodeName)
    nominations: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # key -> (uid, node)

    def bound(self, bind: PodBind) -> None:
        self.nodes[bind.key] = (bind.uid, bind.node)

    def nominated(self, key: str, uid: str | None, node: str | None) -> None:
        self.nominations[key] = (uid, node)

    def __len__(self) -> int:
        return len(self.nodes) + len(self.nominations)

    def view(self, pods: Mapping[str, Pod]) -> dict[str, Pod]:
        """``pods`` with what was written but not yet seen; forgets what the watches confirmed."""
        result = dict(pods)
        for key, (uid, bound_to) in list(self.nodes.items()):
            pod = pods.get(key)
            if pod is None or (uid is not None and pod["metadata"].get("uid") != uid) or pod_spec(pod).get("nodeName"):
                del self.nodes[key]
                continue
            result[key] = {**pod, "spec": {**pod_spec(pod), "nodeName": bound_to}}
        for key, (uid, nominee_node) in list(self.nominations.items()):
            pod = result.get(key)
            seen = pods.get(key)
            if pod is None or seen is None or (uid is not None and pod["metadata"].get("uid") != uid):
                del self.nominations[key]
                continue
            if pod_status(seen).get("nominatedNodeName") == nominee_node:
                del self.nominations[key]
                continue
            result[key] = {**pod, "status": {**pod_status(pod), "nominatedNodeName": nominee_node}}
        return result


class Applier:
    """Performs writes for one operator process; ``allowed`` (leadership) is asked before every bind."""

    def __init__(self, client: Client, *, concurrency: int = 64, allowed: Callable[[], bool] = lambda: True) -> None:
        self.client = client
        self.concurrency = concurrency
        self.allowed = allowed
        self.overlay = Overlay()

    async def bind(self, binds: Iterable[PodBind]) -> list[Outcome]:
        """Binds every pod; one Outcome per bind, in order. What was bound is assumed until the watch says so."""
        outcomes = await bind_all(self.client, binds, concurrency=self.concurrency, allowed=self.allowed)
        for outcome in outcomes:
            if outcome.ok and isinstance(outcome.write, PodBind):
                self.overlay.bound(outcome.write)
        return outcomes

    async def apply(self, writes: Iterable[Write]) -> list[Outcome]:
        """Performs every write, at most ``concurrency`` at a time; one Outcome per write, in order."""
        limit = asyncio.Semaphore(self.concurrency)

        async def one(write: Write) -> Outcome:
            async with limit:
                return await self._send(write)

        return list(await asyncio.gather(*(one(write) for write in writes)))

    async def _send(self, write: Write) -> Outcome:
        try:
            if write.verb == "create":
                await self.client.create(write.path, write.body)
            elif write.verb == "delete":
                await self.client.delete(write.path, grace_period_seconds=write.grace_seconds)
            else:
                await self.client.patch(write.path, write.body, patch_type=write.patch_type)
        except ApiError as error:
            if error.status in write.done:
                return Outcome(write, ok=True)
            reason = f"{error.status} {error.reason}: {error.message}"
        except OSError as error:  # TransportError included: the API server is away
            reason = f"{type(error).__name__}: {error}"
        else:
            return Outcome(write, ok=True)
        if write.best_effort:
            logger.debug("%s %s failed: %s", write.verb, write.path, reason)
        else:
            logger.warning("%s %s failed: %s", write.verb, write.path, reason)
        return Outcome(write, ok=False, reason=reason)


async def bind_all(
    client: Client,
    binds: Iterable[PodBind],
    *,
    concurrency: int = 16,
    allowed: Callable[[], bool] = lambda: True,
) -> list[Outcome]:
    """Binds every pod of ``binds`` through ``pods/binding``; one Outcome per bind, in input order.

    ``allowed`` is asked right before each request (leadership): a bind waiting
    for a slot when it turns false is not sent. A pod already bound to the same
    node (409 "already assigned to node") counts as bound, so repeating a bind is
    harmless; bound elsewhere, it fails with the API server's reason.
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
