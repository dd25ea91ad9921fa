"""A small aiohttp server on loopback for unit tests of the client's callers.

A fake API server: unit tests start no kube-apiserver (the e2e suite runs the
same code against the real one). Each test answers requests with its own handler.
"""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from leitstand.kube import connection
from leitstand.kube.client import Client

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Client]:
    """A ``Client`` connected to a loopback server that answers every request with ``handler``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        credentials = connection.Credentials(lambda: connection.Credential(), user="test")
        async with Client(connection.Connection(server=f"http://127.0.0.1:{port}", credentials=credentials)) as client:
            yield client
    finally:
        await runner.cleanup()


def status(code: int, reason: str, message: str = "") -> web.Response:
    """A ``Status`` failure as the API server sends it."""
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message or reason}  # fmt: skip
    return web.json_response(body, status=code)
