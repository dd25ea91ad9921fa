"""Who is calling, and may they? TokenReview and SubjectAccessReview against the API server.

The status API delegates both questions to Kubernetes, so its users and their
rights are the cluster's own (RBAC). Answers are cached briefly, so a busy
dashboard does not turn into a review per request; the caches are bounded (the
oldest answers go first) and keyed by a token's hash, never the token.
"""

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from leitstand.kube.client import Client

V = TypeVar("V")
CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated user, as TokenReview reports it."""

    name: str
    uid: str
    groups: tuple[str, ...]


class Recent(Generic[V]):
    """Answers remembered for ``ttl`` seconds, at most ``size`` of them: the oldest go first."""

    def __init__(self, ttl: float, size: int = CACHE_SIZE, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._answers: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: Hashable) -> tuple[bool, V | None]:
        """(True, answer) while remembered, else (False, None)."""
        entry = self._answers.get(key)
        if entry is None:
            return False, None
        if self._clock() - entry[0] >= self.ttl:
            del self._answers[key]
            return False, None
        return True, entry[1]

    def put(self, key: Hashable, answer: V) -> None:
        self._answers.pop(key, None)
        self._answers[key] = (self._clock(), answer)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)


class Reviews:
    """TokenReview and SubjectAccessReview with a short, bounded cache."""

    def __init__(self, client: Client, *, ttl: float = 10.0, size: int = CACHE_SIZE) -> None:
        self.client = client
        self.ttl = ttl
        self._callers: Recent[Caller | None] = Recent(ttl, size)
        self._decisions: Recent[bool] = Recent(ttl, size)

    async def authenticate(self, token: str) -> Caller | None:
        """The caller behind a bearer token, or None when the token is not valid."""
        key = hashlib.sha256(token.encode()).digest()
        known, cached = self._callers.get(key)
        if known:
            return cached
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        answer = (await self.client.create("/apis/authentication.k8s.io/v1/tokenreviews", review)).get("status") or {}
        caller = None
        if answer.get("authenticated"):
            user = answer.get("user") or {}
            caller = Caller(str(user.get("username", "")), str(user.get("uid", "")), tuple(user.get("groups") or ()))
        self._callers.put(key, caller)
        return caller

    async def allowed(
        self, caller: Caller, verb: str, resource: str, *, namespace: str | None = None, group: str = "leitstand.dev"
    ) -> bool:
        """May ``caller`` ``verb`` ``resource`` (in ``namespace``, or cluster-wide)?"""
        key = (caller, verb, resource, namespace, group)
        known, cached = self._decisions.get(key)
        if known:
            return bool(cached)
        attributes: dict[str, str] = {"verb": verb, "resource": resource, "group": group}
        if namespace is not None:
            attributes["namespace"] = namespace
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": caller.name,
                "uid": caller.uid,
                "groups": list(caller.groups),
                "resourceAttributes": attributes,
            },
        }
        answer = await self.client.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        allowed = bool((answer.get("status") or {}).get("allowed"))
        self._decisions.put(key, allowed)
        return allowed
