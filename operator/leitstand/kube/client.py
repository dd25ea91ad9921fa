"""A small typed asyncio client for the Kubernetes API, over aiohttp.

Bodies stay raw JSON dicts (``objects.Body``) at this edge; their shapes are
typed in ``kube/objects.py`` and converted for the core in ``kube/bodies.py``.
Every call either returns the decoded body or raises ``ApiError`` with the
API's own status, reason and message, so callers can tell a conflict
(409) from a missing object (404) from throttling (429). Transient failures are
not retried here: retry policy belongs to the caller that knows what is safe.
A request that never got an answer (connection refused or reset, timeout)
raises ``TransportError``, an ``OSError``.

Credentials come from the connection (``kube.connection``) as kubectl's come
from client-go: an expired one is loaded again before the request (an exec
plugin runs in a worker thread, never on the event loop), and a 401 loads it
again once and retries; a second 401 is the caller's ``ApiError``.

aiohttp rather than httpx: binding thousands of pods a second is a stream of
small requests on a few keep-alive connections, and httpcore's pool spends
more time choosing a connection than sending (measured: 213 binds/s at 16 in
flight, falling as more are in flight).
"""

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, Self

import aiohttp
from multidict import CIMultiDict

from leitstand.kube.connection import Connection, Credential
from leitstand.kube.objects import Body

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


class TransportError(OSError):
    """No answer from the API server: the connection failed, broke, or timed out."""


def _error(status_code: int, phrase: str, text: str) -> ApiError:
    try:
        status = json.loads(text)
        return ApiError(status_code, str(status.get("reason", "")), str(status.get("message", "")))
    except (ValueError, AttributeError):
        return ApiError(status_code, phrase, text[:200])


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
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = max_connections
        self._base = connection.server.rstrip("/")
        self._default_headers = {"Accept": "application/json", "User-Agent": user_agent}
        self._session: aiohttp.ClientSession | None = None
        self._session_certificate: tuple[str | None, str | None] = (None, None)
        self._retired: list[aiohttp.ClientSession] = []  # sessions of a replaced client certificate, closed at the end
        self._loading = asyncio.Lock()
        self._impersonation = connection.impersonation()
        self._options: dict[str, Any] = {}  # per request: the kubeconfig cluster's TLS server name and proxy
        if connection.tls_server_name:
            self._options["server_hostname"] = connection.tls_server_name
        if connection.proxy:
            self._options["proxy"] = connection.proxy

    def _http(self, credential: Credential) -> aiohttp.ClientSession:
        """The session for ``credential``'s client certificate, made on first use (aiohttp wants a running loop)."""
        certificate = (credential.cert_file, credential.key_file)
        if self._session is not None and certificate != self._session_certificate:
            self._retired.append(self._session)  # in-flight watches end with it; new requests get the new TLS identity
            self._session = None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.connection.ssl_context(credential), limit=self._limit),
                timeout=self._timeout,
                headers=self._default_headers,
                auto_decompress=True,
            )
            self._session_certificate = certificate
        return self._session

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for session in [*self._retired, self._session]:
            if session is not None:
                await session.close()
        self._session = None
        self._retired.clear()

    async def _credential(self, refused: Credential | None = None) -> Credential:
        """The credential to send: cached while fresh, else loaded off the event loop (once for all waiters)."""
        credentials = self.connection.credentials
        if refused is None:
            credential = credentials.fresh()
            if credential is not None:
                return credential
        async with self._loading:
            if refused is None:
                return await asyncio.to_thread(credentials.current)
            return await asyncio.to_thread(credentials.refresh, refused)

    def _headers(
        self, credential: Credential, extra: Mapping[str, str] | None = None
    ) -> dict[str, str] | CIMultiDict[str]:
        headers = dict(extra or {})
        if credential.authorization:
            headers["Authorization"] = credential.authorization
        if not self._impersonation:
            return headers
        several: CIMultiDict[str] = CIMultiDict(headers)  # one Impersonate-Group line per group
        for name, value in self._impersonation:
            several.add(name, value)
        return several

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        """Sends one request and returns the decoded JSON answer; raises ApiError on non-2xx.

        A 401 loads the credential again and retries once: an expired or revoked
        token is replaced as kubectl replaces it, and a second 401 is reported.
        """
        content = None if body is None else json.dumps(body).encode()
        credential = self.connection.credentials.fresh() or await self._credential()
        for attempt in (1, 2):
            headers = self._headers(credential, {"Content-Type": content_type} if content is not None else None)
            try:
                async with self._http(credential).request(
                    method, self._base + path, data=content, params=params, headers=headers, **self._options
                ) as response:
                    text = await response.text()
                    status, phrase = response.status, response.reason or ""
            except (TimeoutError, aiohttp.ClientError) as error:
                raise TransportError(f"{method} {path}: {type(error).__name__}: {error}") from error
            if status == 401 and attempt == 1:
                credential = await self._credential(refused=credential)
                continue
            break
        if status >= 400:
            raise _error(status, phrase, text)
        if not text:
            return {}
        decoded: Body = json.loads(text)
        return decoded

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> Body:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Body, *, field_validation: str = "Strict") -> Body:
        """Creates ``body``; unknown or duplicate fields are errors, as with kubectl."""
        return await self.request("POST", path, body=body, params={"fieldValidation": field_validation})

    async def ensure(self, path: str, body: Body) -> None:
        """Creates ``body`` unless it exists already (409); any other refusal is an ``ApiError``."""
        try:
            await self.create(path, body)
        except ApiError as error:
            if error.status != 409:
                raise

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
        timeout = aiohttp.ClientTimeout(total=None, connect=30.0, sock_read=timeout_seconds + 30.0)
        credential = self.connection.credentials.fresh() or await self._credential()
        try:
            async with self._http(credential).get(
                self._base + path, params=params, headers=self._headers(credential), timeout=timeout, **self._options
            ) as response:
                if response.status == 401:  # the caller watches again; by then the credential is a new one
                    await self._credential(refused=credential)
                if response.status >= 400:
                    raise _error(response.status, response.reason or "", await response.text())
                pending = b""
                async for chunk in response.content.iter_any():  # events may be longer than a read buffer
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if not line.strip():
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
        except (TimeoutError, aiohttp.ClientError) as error:
            raise TransportError(f"watch {path}: {type(error).__name__}: {error}") from error
