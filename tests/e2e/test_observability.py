"""A real Prometheus scrapes the real operator: every dashboard query returns data, the metrics are clean."""

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from leitstand.devcluster import cluster, prometheus
from leitstand.kube import connection
from leitstand.kube.client import Client
from leitstand.metrics import dashboards
from tests.e2e.clusters import own_cluster
from tests.e2e.operators import Operator
from tests.e2e.test_operator import clean, held, job, quota
from tests.e2e.waiting import until


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    yield from own_cluster(tmp_path_factory, "observed")


@pytest.fixture
async def api(dev: cluster.LocalCluster) -> AsyncIterator[Client]:
    async with Client(connection.load(dev.kubeconfig)) as client:
        yield client
        await clean(client)


class Prometheus:
    """Debian's prometheus, scraping one target every second, on a free port."""

    def __init__(self, target: str, directory: Path) -> None:
        self.port = cluster.free_port()
        config = directory / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "leitstand", "static_configs": [{"targets": [target]}]}],
        }))  # fmt: skip
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as stream:
            self.process = subprocess.Popen(
                [str(prometheus.locate("prometheus")), f"--config.file={config}",
                 f"--storage.tsdb.path={directory / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    async def query(self, expr: str) -> list[Any] | None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as http:
            answer = (await http.get("/api/v1/query", params={"query": expr})).json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[Any] = answer["data"]["result"]
        return result or None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    api: Client, dev: cluster.LocalCluster, tmp_path: Path
) -> None:
    operator = Operator(dev.kubeconfig, tmp_path / "operator.log")
    operator.wait_ready()
    scraper = Prometheus(f"127.0.0.1:{operator.port}", tmp_path)
    try:

        async def ready() -> bool | None:
            try:
                async with httpx.AsyncClient() as http:
                    return (
                        True
                        if (await http.get(f"http://127.0.0.1:{scraper.port}/-/ready")).status_code == 200
                        else None
                    )
            except httpx.HTTPError:
                return None

        await until(ready, what="Prometheus to be ready", within=60)
        # a scenario with something in every panel: a finished job, waiting jobs, and reclaim
        await quota(api, "root", parent=None)
        for name in ("t-a", "t-b"):
            await quota(api, name, guaranteed=16)
        await job(api, "t-a", "quick", 1, template={"annotations": {"leitstand.dev/sim-duration": "2s"}})
        for i in range(9):
            await job(api, "t-a", f"a{i}", 1)

        async def full() -> bool | None:
            return True if (await held(api))["t-a"] == 64 else None

        await until(full, what="t-a to fill the cluster", within=60)
        for i in range(2):
            await job(api, "t-b", f"b{i}", 1)

        async def reclaimed() -> bool | None:
            return True if (await held(api))["t-b"] >= 8 else None

        await until(reclaimed, what="t-b to reclaim", within=60)
        await asyncio.sleep(3)  # a few more scrapes

        for name, board in dashboards.dashboards().items():
            for panel in board["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$__rate_interval", "1m")
                    await until(
                        lambda e=expr: scraper.query(e), what=f"data for {name} / {panel['title']}: {expr}", within=30
                    )

        async with httpx.AsyncClient() as http:
            metrics_text = (await http.get(f"http://127.0.0.1:{operator.port}/metrics", timeout=10)).text
        assert "leitstand_evictions_total" in metrics_text
        checked = await asyncio.to_thread(
            subprocess.run,
            [str(prometheus.locate("promtool")), "check", "metrics"],
            input=metrics_text,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.strip() == checked.stderr.strip() == ""
        started = [
            line
            for line in metrics_text.splitlines()
            if line.startswith('leitstand_job_wait_seconds_count{queue="t-a"}')
        ]
        assert started, "no wait time was observed"
        assert float(started[0].split()[-1]) >= 8
    finally:
        scraper.stop()
        operator.stop()
