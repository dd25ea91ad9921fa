"""The store and the informers: a relist replaces a kind, so nothing deleted during a lost watch stays.

The informer test runs against a small aiohttp server on loopback that speaks the
list and watch protocol (a fake: unit tests start no kube-apiserver; the e2e test
``tests/e2e/test_ghosts.py`` does the same against the real one, with compaction).
"""

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from leitstand.kube import connection, informers
from leitstand.kube.client import Client
from leitstand.kube.objects import Body
from leitstand.kube.reviews import Recent
from leitstand.kube.store import Store


def quota(name: str, version: str) -> Body:
    return {"metadata": {"name": name, "resourceVersion": version}}


def test_a_relist_replaces_the_kind_and_forgets_what_vanished() -> None:
    store = Store()
    store.reset("GPUQuota", [quota("a", "1"), quota("b", "2")])
    store.apply("GPUQuota", "MODIFIED", quota("b", "3"))
    generation = store.generation
    store.reset("GPUQuota", [quota("b", "4")])
    assert list(store.quotas) == ["b"]
    assert store.quotas["b"]["metadata"]["resourceVersion"] == "4"
    assert store.generation > generation
    assert store.changed.is_set()
    store.apply("GPUQuota", "DELETED", quota("b", "5"))
    store.apply("GPUQuota", "DELETED", quota("b", "5"))  # a repeated event changes nothing more
    assert store.quotas == {}


class FakeApiServer:
    """Lists GPUQuotas, and answers a watch from an old resourceVersion with 410 Gone, as after compaction."""

    def __init__(self) -> None:
        self.items = [quota("a", "10"), quota("ghost", "11")]
        self.version = "11"
        self.watches: list[str] = []
        self.lists = 0
        self.closing = asyncio.Event()

    async def gpuquotas(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            self.lists += 1
            return web.json_response({"metadata": {"resourceVersion": self.version}, "items": self.items})
        since = request.query["resourceVersion"]
        self.watches.append(since)
        response = web.StreamResponse()
        await response.prepare(request)
        if since != self.version:
            gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
            await response.write(json.dumps(gone).encode() + b"\n")
            return response
        bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": self.version}}}
        await response.write(json.dumps(bookmark).encode() + b"\n")
        await self.closing.wait()  # a quiet watch, until the test ends
        return response


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeApiServer, str]]:
    server = FakeApiServer()
    app = web.Application()
    app.router.add_get("/apis/leitstand.dev/v1alpha1/gpuquotas", server.gpuquotas)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield server, f"http://127.0.0.1:{port}"
    server.closing.set()
    await runner.cleanup()


async def test_a_watch_that_expired_relists_and_the_ghost_leaves_the_store(fake: tuple[FakeApiServer, str]) -> None:
    server, url = fake
    store = Store()
    path = "/apis/leitstand.dev/v1alpha1/gpuquotas"
    credentials = connection.Credentials(lambda: connection.Credential(), user="test")
    async with Client(connection.Connection(server=url, credentials=credentials)) as client:
        version = await informers.list_into(client, store, "GPUQuota", path)
        assert (version, sorted(store.quotas)) == ("11", ["a", "ghost"])

        server.items = [quota("a", "12")]  # "ghost" deleted while nobody watched; etcd compacted
        server.version = "12"
        task = asyncio.create_task(informers.inform(client, store, "GPUQuota", path, resource_version=version))
        try:
            for _ in range(100):
                if "ghost" not in store.quotas and server.watches[-1:] == ["12"]:
                    break
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert sorted(store.quotas) == ["a"]
    assert server.watches[:2] == ["11", "12"]  # 410 on the old version, then a watch from the relist
    assert server.lists == 2


def test_recent_answers_expire_and_the_oldest_go_first() -> None:
    now = [0.0]
    recent: Recent[bool] = Recent(ttl=10, size=3, clock=lambda: now[0])
    for key in "abcd":
        recent.put(key, True)
    assert len(recent) == 3
    assert recent.get("a") == (False, None)  # the oldest went when the fourth came
    assert recent.get("d") == (True, True)
    now[0] = 10.0
    assert recent.get("d") == (False, None)  # expired answers are forgotten when asked for
    assert len(recent) == 2
