"""Who is calling, and may they? TokenReview and SubjectAccessReview against the API server.

The status API delegates both questions to Kubernetes, so its users and their
rights are the cluster's own (RBAC). Answers are cached briefly, so a busy
dashboard does not turn into a review per request.
"""

import time
from dataclasses import dataclass

from leitstand.kube.client import Client


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated user, as TokenReview reports it."""

    name: str
    uid: str
    groups: tuple[str, ...]


class Reviews:
    """TokenReview and SubjectAccessReview with a short cache."""

    def __init__(self, client: Client, *, ttl: float = 10.0) -> None:
        self.client = client
        self.ttl = ttl
        self._callers: dict[str, tuple[float, Caller | None]] = {}
        self._decisions: dict[tuple[object, ...], tuple[float, bool]] = {}

    async def authenticate(self, token: str) -> Caller | None:
        """The caller behind a bearer token, or None when the token is not valid."""
        cached = self._callers.get(token)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        answer = (await self.client.create("/apis/authentication.k8s.io/v1/tokenreviews", review)).get("status") or {}
        caller = None
        if answer.get("authenticated"):
            user = answer.get("user") or {}
            caller = Caller(str(user.get("username", "")), str(user.get("uid", "")), tuple(user.get("groups") or ()))
        self._callers[token] = (time.monotonic(), caller)
        return caller

    async def allowed(
        self, caller: Caller, verb: str, resource: str, *, namespace: str | None = None, group: str = "leitstand.dev"
    ) -> bool:
        """May ``caller`` ``verb`` ``resource`` (in ``namespace``, or cluster-wide)?"""
        key = (caller, verb, resource, namespace, group)
        cached = self._decisions.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
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
        self._decisions[key] = (time.monotonic(), allowed)
        return allowed
