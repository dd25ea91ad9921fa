"""Every write the operator makes, and what it assumes until the watches confirm it.

The scheduling loop decides from one view of the store and says what to write
(``Write``: binds, pod and Service creation, deletions, finalizers, status
patches, Events); the ``Applier`` performs the writes concurrently, at most
``concurrency`` in flight, with one ``Outcome`` per write. A failure is
reported, never raised, so one refused write cannot hide the others; answers
that mean "already done" (a 409 on create, a 404 on delete) count as done.

Binds are awaited by the cycle that decided them (``bind``): a gang bound
part-way is released in the same cycle. Every other write is handed over
(``submit``) and performed in the background, so a slow or failing API server
never stalls the decision loop, as KAI-Scheduler's binder is apart from its
scheduler. Writes to the same object with the same verb (``Write.key``) are
never in flight together, and a newer one waiting replaces the older: a cycle
that plans again before the watches caught up adds no duplicate requests.

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
    key: str = ""  # the object and verb it changes: a newer write with the same key replaces a waiting one
    then: "Write | None" = None  # sent once this one is answered, whatever the answer (a condition before a delete)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", f"{self.verb} {self.path}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one write (or one bind)."""

    write: Write | PodBind
    ok: bool
    reason: str = ""
    status: int | None = None  # the API server's answer when it refused; None when it was not reached


SETTLED = (404, 409)  # gone, already there, or changed meanwhile: nothing to warn about, the next cycle looks again


def create(path: str, body: Body) -> Write:
    name = (body.get("metadata") or {}).get("name")
    return Write("create", path, body, done=SETTLED, key=f"create {path}/{name}" if name else "")


def delete(path: str, *, grace_seconds: int | None = None) -> Write:
    return Write("delete", path, grace_seconds=grace_seconds, done=SETTLED)


def patch(
    path: str, body: Any, *, patch_type: PatchType = "merge", purpose: str = "", then: Write | None = None
) -> Write:
    """A patch; ``purpose`` tells apart patches of different parts of one object (a pod's nomination and
    its PodScheduled condition), so that one never replaces the other while waiting. ``then`` is sent once
    the patch is answered."""
    key = f"patch {path} {purpose}" if purpose else ""
    return Write("patch", path, body, patch_type=patch_type, done=SETTLED, key=key, then=then)


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
    what = f"event {meta.get('uid') or meta['name']} {event_type} {reason} {message}"  # the same Event once
    return Write("create", f"/api/v1/namespaces/{namespace}/events", body, best_effort=True, key=what)


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

    def not_nominated(self, key: str, uid: str | None, node: str | None) -> None:
        """Forgets a nomination assumed when its write was handed over, once that write failed."""
        if self.nominations.get(key) == (uid, node):
            del self.nominations[key]

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


Done = Callable[[Outcome], None]


def _same(first: Write, second: Write) -> bool:
    """Would ``second`` do what ``first`` does? (Events with the same key say the same thing.)"""
    if first.best_effort and second.best_effort:
        return first.key == second.key
    if (first.then is None) != (second.then is None):
        return False
    if first.then is not None and second.then is not None and not _same(first.then, second.then):
        return False
    return (first.verb, first.path, first.body, first.patch_type, first.grace_seconds) == (
        second.verb, second.path, second.body, second.patch_type, second.grace_seconds
    )  # fmt: skip


class Applier:
    """Performs writes for one operator process; ``allowed`` (leadership) is asked before every bind."""

    def __init__(self, client: Client, *, concurrency: int = 64, allowed: Callable[[], bool] = lambda: True) -> None:
        self.client = client
        self.concurrency = concurrency
        self.allowed = allowed
        self.overlay = Overlay()
        self._waiting: dict[str, tuple[Write, Done | None]] = {}  # submitted, not yet sent, by key (oldest first)
        self._sending: dict[str, Write] = {}  # in flight, by key
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def bind(self, binds: Iterable[PodBind]) -> list[Outcome]:
        """Binds every pod; one Outcome per bind, in order. What was bound is assumed until the watch says so."""
        outcomes = await bind_all(self.client, binds, concurrency=self.concurrency, allowed=self.allowed)
        for outcome in outcomes:
            if outcome.ok and isinstance(outcome.write, PodBind):
                self.overlay.bound(outcome.write)
        return outcomes

    def submit(self, writes: Iterable[Write], done: "Done | None" = None) -> None:
        """Hands ``writes`` over to be performed in the background; ``done`` gets each one's Outcome.

        A write with the key of one in flight and equal to it is dropped (it is
        on its way already); a write with the key of one still waiting replaces it.
        Writes are sent only while ``allowed`` (a deposed leader writes nothing more).
        """
        for write in writes:
            sending = self._sending.get(write.key)
            if sending is not None and _same(sending, write):
                self._waiting.pop(write.key, None)  # an older one waiting behind it would undo the newest word
                continue
            self._waiting.pop(write.key, None)
            self._waiting[write.key] = (write, done)
        if self._waiting:
            self._idle.clear()
            self._wake.set()
            if self._runner is None or self._runner.done():
                self._runner = asyncio.create_task(self._run(), name="leitstand-writes")

    async def drain(self) -> None:
        """Returns once every submitted write has been performed (or dropped)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stops writing; what is still waiting is dropped (a new leader plans it again)."""
        self._waiting.clear()
        tasks = [*self._tasks, *([self._runner] if self._runner is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sending.clear()
        self._idle.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for key in [k for k in self._waiting if k not in self._sending]:
                await self._slots.acquire()
                if key not in self._waiting:  # dropped meanwhile (close)
                    self._slots.release()
                    continue
                write, done = self._waiting.pop(key)
                self._sending[key] = write
                task = asyncio.create_task(self._one(write, done))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not self._waiting and not self._sending:
                self._idle.set()

    async def _one(self, write: Write, done: "Done | None") -> None:
        try:
            if self.allowed():
                outcome = await self._send(write)
            else:
                outcome = Outcome(write, ok=False, reason="not the leader")
        finally:
            self._slots.release()
            if self._sending.get(write.key) is write:
                del self._sending[write.key]
            self._wake.set()  # a write waiting behind this one may go; or the runner sees it is idle
        if write.then is not None and self.allowed():  # a deposed leader sends nothing more
            self.submit([write.then], done)
        if done is not None:
            try:
                done(outcome)
            except Exception:  # a callback's bug must not stop the writes
                logger.exception("handling the outcome of %s %s failed", write.verb, write.path)

    async def apply(self, writes: Iterable[Write]) -> list[Outcome]:
        """Performs every write, at most ``concurrency`` at a time; one Outcome per write, in order (a write's
        ``then`` follows it, and only failures of the followers are logged)."""
        limit = asyncio.Semaphore(self.concurrency)

        async def one(write: Write) -> Outcome:
            async with limit:
                outcome = await self._send(write)
                follower = write.then
                while follower is not None:
                    await self._send(follower)
                    follower = follower.then
                return outcome

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
            code: int | None = error.status
        except OSError as error:  # TransportError included: the API server is away
            reason = f"{type(error).__name__}: {error}"
            code = None
        else:
            return Outcome(write, ok=True)
        if write.best_effort:
            logger.debug("%s %s failed: %s", write.verb, write.path, reason)
        else:
            logger.warning("%s %s failed: %s", write.verb, write.path, reason)
        return Outcome(write, ok=False, reason=reason, status=code)


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
