"""The applier: one outcome per write, settled answers count as done, and an overlay until the watch confirms.

The outcomes are checked against a small aiohttp server on loopback that answers
each path with a chosen status (a fake: unit tests start no kube-apiserver; the
e2e suite runs every write against the real one).
"""

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from leitstand.kube import applier
from leitstand.kube.applier import Applier, Overlay, PodBind
from leitstand.kube.client import Client
from leitstand.kube.objects import Body
from tests.unit import loopback


def pod(name: str, uid: str = "u1", node: str | None = None, nominated: str | None = None) -> Body:
    body: Body = {"metadata": {"name": name, "namespace": "t", "uid": uid}, "spec": {}, "status": {}}
    if node:
        body["spec"]["nodeName"] = node
    if nominated:
        body["status"]["nominatedNodeName"] = nominated
    return body


def test_the_overlay_shows_a_bind_until_the_watch_does_and_forgets_replaced_pods() -> None:
    overlay = Overlay()
    overlay.bound(PodBind("t", "a", "u1", "n1"))
    overlay.bound(PodBind("t", "b", "u1", "n2"))
    store = {"t/a": pod("a"), "t/b": pod("b", uid="u2")}  # b was deleted and recreated meanwhile
    seen = overlay.view(store)
    assert seen["t/a"]["spec"]["nodeName"] == "n1"
    assert "nodeName" not in store["t/a"]["spec"]  # the store's copy is never changed
    assert "nodeName" not in seen["t/b"]["spec"]
    assert len(overlay) == 1
    assert overlay.view(store)["t/a"]["spec"]["nodeName"] == "n1"  # read again, still assumed
    assert len(overlay) == 1
    overlay.view({"t/a": pod("a", node="n1")})  # the watch reported it
    assert len(overlay) == 0


def test_the_overlay_keeps_a_nomination_until_the_pod_shows_it() -> None:
    overlay = Overlay()
    overlay.nominated("t/a", "u1", "n3")
    overlay.nominated("t/c", "u1", None)  # a cleared nomination is a change too
    store = {"t/a": pod("a"), "t/c": pod("c", nominated="n9")}
    seen = overlay.view(store)
    assert seen["t/a"]["status"]["nominatedNodeName"] == "n3"
    assert seen["t/c"]["status"]["nominatedNodeName"] is None
    overlay.view({"t/a": pod("a", nominated="n3"), "t/c": pod("c")})
    assert len(overlay) == 0


ANSWERS = {
    "/api/v1/namespaces/t/pods": (409, "AlreadyExists"),
    "/api/v1/namespaces/t/pods/gone": (404, "NotFound"),
    "/api/v1/namespaces/t/pods/broken/status": (500, "InternalError"),
    "/api/v1/namespaces/t/events": (403, "Forbidden"),
    "/api/v1/namespaces/t/pods/a/binding": (201, ""),
    "/api/v1/namespaces/t/pods/b/binding": (409, 'pod b is already assigned to node "elsewhere"'),
}


@pytest.fixture
async def api() -> AsyncIterator[Client]:
    async def answer(request: web.Request) -> web.Response:
        code, reason = ANSWERS.get(request.path, (200, ""))
        if code >= 400:
            return loopback.status(code, reason)
        return web.json_response({"kind": "Pod"}, status=code)

    async with loopback.serving(answer) as client:
        yield client


async def test_one_outcome_per_write_in_order_with_settled_answers_done(api: Client) -> None:
    writes = [
        applier.create("/api/v1/namespaces/t/pods", pod("exists")),  # 409: it is there already
        applier.delete("/api/v1/namespaces/t/pods/gone"),  # 404: gone already
        applier.patch("/api/v1/namespaces/t/pods/broken/status", {"status": {}}),  # 500
        applier.event({"kind": "Pod", **pod("a")}, "Normal", "Scheduled", "bound", now=0),  # 403, best effort
        applier.patch("/api/v1/namespaces/t/pods/fine", {"metadata": {}}),
    ]
    outcomes = await Applier(api).apply(writes)
    assert [o.write for o in outcomes] == writes
    assert [o.ok for o in outcomes] == [True, True, False, False, True]
    assert outcomes[2].reason == "500 InternalError: InternalError"


async def test_binds_report_each_pod_and_only_the_bound_are_assumed(api: Client) -> None:
    writer = Applier(api)
    binds = [PodBind("t", "a", "u1", "n1"), PodBind("t", "b", "u1", "n1")]
    outcomes = await writer.bind(binds)
    assert [(o.write, o.ok) for o in outcomes] == [(binds[0], True), (binds[1], False)]
    assert writer.overlay.nodes == {"t/a": ("u1", "n1")}
    deposed = await Applier(api, allowed=lambda: False).bind(binds)
    assert {o.reason for o in deposed} == {"not the leader"}
