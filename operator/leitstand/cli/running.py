"""``leitstand run``: the operator, its scheduling loop and its HTTP server in one event loop."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import prometheus_client
import typer
import uvicorn
from fastapi import FastAPI, Response

from leitstand.api import server
from leitstand.controller import configuration, operator
from leitstand.kube import connection
from leitstand.kube.client import Client
from leitstand.kube.reviews import Reviews
from leitstand.metrics import observing


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``run`` owns SIGINT/SIGTERM for everything."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(connected: connection.Connection, config: configuration.Configuration, *, http_port: int) -> None:
    stop = asyncio.Event()
    health = operator.Health()
    async with Client(connected, user_agent="leitstand-status-api") as review_client:
        app = server.create_app(
            ready=lambda: health.synced,
            latest=lambda: health.latest,
            pod_estimates=lambda: health.pod_estimates,
            trainingjobs=lambda: list(health.store.jobs.values()) if health.store is not None else [],
            reviews=Reviews(review_client),
        )

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)

        await _run(connected, config, app, health, stop, http_port)


async def _run(
    connected: connection.Connection,
    config: configuration.Configuration,
    app: FastAPI,
    health: operator.Health,
    stop: asyncio.Event,
    http_port: int,
) -> None:
    http = _Server(uvicorn.Config(app, host="0.0.0.0", port=http_port, log_level="warning", lifespan="off"))  # noqa: S104 - probes and scrapes come from outside the pod

    def shutdown() -> None:
        stop.set()
        http.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shutdown)
    http_task = asyncio.create_task(http.serve())
    try:
        await operator.run(connected, config, health=health, stop=stop, metrics=observing.SchedulerMetrics())
    finally:
        shutdown()
        await http_task


def run(
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)."),
    ] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context (default: the current one).")] = None,
    http_port: Annotated[int, typer.Option(help="Port of /healthz, /readyz, /metrics and the API.")] = 8080,
    config: Annotated[
        Path | None, typer.Option("--config", help="Operator configuration YAML (topology, GPU types, ...).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every decision.")] = False,
) -> None:
    """Run the Leitstand operator (the scheduler) against a cluster."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("leitstand").setLevel(logging.INFO if verbose else logging.WARNING)
    settings = configuration.load(config)
    asyncio.run(_serve(connection.load(kubeconfig, context=context), settings, http_port=http_port))
