"""A small typed asyncio client for the Kubernetes API, over httpx.

Bodies stay raw JSON dicts (``Body``) at this edge; the store and the core
convert them. Every call either returns the decoded body or raises ``ApiError``
with the API's own status, reason and message, so callers can tell a conflict
(409) from a missing object (404) from throttling (429). Transient failures are
not retried here: retry policy belongs to the caller that knows what is safe.
"""

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, Self

import httpx

from leitstand.kube.kubeconfig import Connection

Body = dict[str, Any]
PatchType = Literal["merge", "strategic", "json", "apply"]

_PATCH_CONTENT_TYPES: dict[PatchType, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiError(Exception):
    """A non-2xx answer of the API server, with its Status fields."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def _error(response: httpx.Response) -> ApiError:
    try:
        status = response.json()
        return ApiError(response.status_code, str(status.get("reason", "")), str(status.get("message", "")))
    except ValueError:
        return ApiError(response.status_code, response.reason_phrase, response.text[:200])


def path_for(api_version: str, plural: str, *, namespace: str | None = None, name: str | None = None) -> str:
    """The REST path of a collection or object: ``/api/v1/...`` or ``/apis/<group>/<version>/...``."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [prefix]
    if namespace is not None:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name is not None:
        parts.append(name)
    return "/".join(parts)


class Client:
    """An async API client bound to one connection; use ``async with``."""

    def __init__(
        self, connection: Connection, *, timeout: float = 30.0, max_connections: int = 64, user_agent: str = "leitstand"
    ) -> None:
        self.connection = connection
        self._http = httpx.AsyncClient(
            base_url=connection.server,
            verify=connection.ssl_context(),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Accept": "application/json", "User-Agent": user_agent},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        token = self.connection.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        """Sends one request and returns the decoded JSON answer; raises ApiError on non-2xx."""
        content = None if body is None else json.dumps(body).encode()
        headers = self._headers({"Content-Type": content_type} if content is not None else None)
        response = await self._http.request(method, path, content=content, params=params, headers=headers)
        if response.status_code >= 400:
            raise _error(response)
        if not response.content:
            return {}
        decoded: Body = response.json()
        return decoded

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> Body:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Body, *, field_validation: str = "Strict") -> Body:
        """Creates ``body``; unknown or duplicate fields are errors, as with kubectl."""
        return await self.request("POST", path, body=body, params={"fieldValidation": field_validation})

    async def replace(self, path: str, body: Body) -> Body:
        return await self.request("PUT", path, body=body)

    async def patch(
        self,
        path: str,
        body: Any,
        *,
        patch_type: PatchType = "merge",
        field_manager: str | None = None,
        force: bool = False,
    ) -> Body:
        params = {}
        if field_manager is not None:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        return await self.request(
            "PATCH", path, body=body, params=params, content_type=_PATCH_CONTENT_TYPES[patch_type]
        )

    async def delete(
        self, path: str, *, grace_period_seconds: int | None = None, propagation: str | None = None
    ) -> Body:
        options: Body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation is not None:
            options["propagationPolicy"] = propagation
        return await self.request("DELETE", path, body=options)

    async def list(self, path: str, *, label_selector: str | None = None, limit: int = 500) -> Body:
        """The whole collection at ``path``, following ``continue`` tokens; items merged."""
        items: list[Body] = []
        params: dict[str, str] = {"limit": str(limit)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self.get(path, params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                page["items"] = items
                return page
            params["continue"] = token

    async def bind(self, namespace: str, pod: str, node: str, *, uid: str | None = None) -> Body:
        """Binds ``pod`` to ``node`` through the ``pods/binding`` subresource.

        With ``uid`` the binding applies only to that incarnation of the pod, so
        a pod deleted and recreated under the same name is never bound by mistake.
        """
        metadata: Body = {"name": pod, "namespace": namespace}
        if uid is not None:
            metadata["uid"] = uid
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": metadata,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        return await self.create(f"/api/v1/namespaces/{namespace}/pods/{pod}/binding", binding)

    async def watch(self, path: str, *, resource_version: str, timeout_seconds: int = 300) -> AsyncIterator[Body]:
        """Watch events (``{"type", "object"}``) on ``path`` from ``resource_version``.

        Ends when the server closes the stream; an ``ERROR`` event (such as 410
        Gone) is raised as ApiError, so the caller relists.
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = httpx.Timeout(30.0, read=timeout_seconds + 30.0)
        async with self._http.stream("GET", path, params=params, headers=self._headers(), timeout=timeout) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response)
            async for line in response.aiter_lines():
                if not line:
                    continue
                event: Body = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(
                        int(status.get("code", 500)),
                        str(status.get("reason", "")),
                        str(status.get("message", "")),
                    )
                yield event
