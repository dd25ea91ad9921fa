"""The live cluster map (``/ui``) in headless Chromium, at the dev and the industrial-ai-cloud scale.

Each scenario runs the real operator on a control plane of its own, reads the DOM
the page's script built (``--dump-dom``) and takes a 1400 x 900 screenshot. The
screenshots land in pytest's temporary directory; the test prints where (the ones
in ``docs/map/`` are copies of them).
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from leitstand.devcluster import cluster, profiles
from leitstand.kube import connection
from leitstand.kube.client import Client
from tests.e2e.browser import chromium
from tests.e2e.clusters import own_cluster
from tests.e2e.operators import Operator, account
from tests.e2e.test_operator import job, quota, state
from tests.e2e.waiting import until

PLATFORM = [{"apiGroups": ["leitstand.dev"], "resources": ["gpuquotas", "trainingjobs"], "verbs": ["get", "list"]}]
QUOTAS_ONLY = [{"apiGroups": ["leitstand.dev"], "resources": ["gpuquotas"], "verbs": ["get", "list"]}]
WINDOW = "--window-size=1400,900"


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class Page(HTMLParser):
    """The elements of a dumped DOM with their attributes and text: enough to assert on what the page drew."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {key: value or "" for key, value in attrs})
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def having(self, attribute: str, tag: str | None = None) -> list[Element]:
        return [e for e in self.elements if attribute in e.attrs and (tag is None or e.tag == tag)]

    def first(self, attribute: str, value: str) -> Element:
        found = [e for e in self.having(attribute) if e.attrs[attribute] == value]
        assert found, f"no element with {attribute}={value!r}"
        return found[0]


@dataclass
class Scene:
    """A running operator with its status API, tokens, and where the scenario's screenshots go."""

    port: int
    tokens: dict[str, str]
    shots: Path

    def url(self, token: str, node: str | None = None) -> str:
        return f"http://127.0.0.1:{self.port}/ui#token={self.tokens[token]}" + (f"&node={node}" if node else "")

    async def get(self, path: str) -> Any:
        """``path`` of the status API, read with the platform team's token."""
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.get(f"http://127.0.0.1:{self.port}{path}",
                                    headers={"Authorization": f"Bearer {self.tokens['platform']}"})  # fmt: skip
        answer.raise_for_status()
        return answer.json()


async def dump(url: str, profile: Path) -> Page:
    html = await asyncio.to_thread(chromium, "--dump-dom", WINDOW, url, user_data=profile)
    page = Page(html)
    body = [e for e in page.elements if e.tag == "body"]
    assert body, html[-3000:]
    assert body[0].attrs.get("data-loaded") == "true", html[-3000:]
    return page


async def screenshot(url: str, path: Path, profile: Path) -> Path:
    await asyncio.to_thread(chromium, f"--screenshot={path}", WINDOW, url, user_data=profile)
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    assert size > 10_000
    print(f"\ncluster map screenshot: {path}")
    return path


def topology(profile: str) -> tuple[set[str], set[str], set[str]]:
    """The spines, leaf groups and node names of a shipped profile, from its node labels."""
    nodes = profiles.nodes(profiles.load(profile))
    labels = [n["metadata"]["labels"] for n in nodes]
    return ({lb[profiles.SPINE_LABEL] for lb in labels}, {lb[profiles.LEAF_LABEL] for lb in labels},
            {n["metadata"]["name"] for n in nodes})  # fmt: skip


async def settled(scene: Scene, admin: Client, *, running: set[str], waiting: dict[str, str], within: float) -> None:
    """Waits until the status API shows ``running`` jobs Running and ``waiting`` ones Queued with their reasons."""

    async def seen() -> bool | None:
        try:
            jobs = await scene.get("/api/v1/jobs")
        except httpx.HTTPError:
            return None
        phases = {f"{j['namespace']}/{j['name']}": (j.get("phase"), j.get("reason")) for j in jobs}
        ok = all(phases.get(key, (None,))[0] == "Running" for key in running) and all(
            phases.get(key) == ("Queued", reason) for key, reason in waiting.items()
        )
        return True if ok else None

    async def context() -> str:
        return await state(admin)

    await until(seen, what="the jobs to run and the waiting one to be explained", within=within, context=context)


def queue_rows(page: Page) -> dict[str, Element]:
    """The first row of each queue in the queue tree, in the order drawn."""
    rows: dict[str, Element] = {}
    for row in page.having("data-queue", "tr"):
        rows.setdefault(row.attrs["data-queue"], row)
    return rows


# ---- dev scale -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    yield from own_cluster(tmp_path_factory, "map-dev")


DEV_TREE = {"root": None, "research": "root", "t-vision": "research", "t-speech": "research",
            "t-robotics": "research", "t-industry": "root"}  # fmt: skip


@pytest.fixture(scope="module")
async def dev_map(dev: cluster.LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    """Four leaf queues (three under ``research``) with running jobs on shared and whole nodes of both GPU types,
    and one gang that waits for capacity."""
    async with Client(connection.load(dev.kubeconfig)) as admin:
        await quota(admin, "root", parent=None)
        await quota(admin, "research", guaranteed=40, leaf=False)
        await quota(admin, "t-vision", parent="research", guaranteed=16)
        await quota(admin, "t-speech", parent="research", guaranteed=16)
        await quota(admin, "t-robotics", parent="research", guaranteed=8)
        await quota(admin, "t-industry", guaranteed=16, gpus={"b200": {"guaranteed": 16}, "rtx-pro-6000": {"guaranteed": 8}})  # fmt: skip
        await job(admin, "t-vision", "detector", 2, runtimeLimit="3h")
        await job(admin, "t-speech", "asr", 1, gpus=4, runtimeLimit="2h")
        await job(admin, "t-robotics", "probe", 1, gpus=4, runtimeLimit="1h")
        await job(admin, "t-speech", "tts", 1, runtimeLimit="2h")
        await job(admin, "t-industry", "twin", 2, runtimeLimit="4h")
        await job(admin, "t-industry", "render", 1, gpuType="rtx-pro-6000")
        tokens = {
            "platform": await account(admin, "leitstand-system", "map-platform", PLATFORM, cluster_wide=True),
            "quotas": await account(admin, "leitstand-system", "map-quotas", QUOTAS_ONLY, cluster_wide=True),
        }
        operator = Operator(dev.kubeconfig, tmp_path_factory.mktemp("map-dev-operator") / "operator.log")
        try:
            operator.wait_ready()
            scene = Scene(operator.port, tokens, tmp_path_factory.mktemp("map-dev-shots"))
            running = {"t-vision/detector", "t-speech/asr", "t-robotics/probe", "t-speech/tts", "t-industry/twin",
                       "t-industry/render"}  # fmt: skip
            await settled(scene, admin, running=running, waiting={}, within=60)
            # four whole nodes: more than the 16 GPUs left free, so it waits for capacity (submitted once the
            # others run, so that it is not the one that starts first)
            await job(admin, "t-robotics", "huge", 4)
            await settled(scene, admin, running=running, waiting={"t-robotics/huge": "InsufficientCapacity"}, within=60)
            yield scene
        finally:
            operator.stop()


async def test_the_dev_map_shows_every_leaf_group_node_and_queue_with_distinct_colours_and_the_waiting_job(
    dev_map: Scene, tmp_path: Path
) -> None:
    spines, leaves, node_names = topology("dev")
    cluster_view = await dev_map.get("/api/v1/cluster")
    queues = {q["name"]: q for q in await dev_map.get("/api/v1/queues")}
    holder = next(n["name"] for n in cluster_view["nodes"] if [j["name"] for j in n["jobs"]] == ["detector"])
    url = dev_map.url("platform", node=holder)
    page = await dump(url, tmp_path / "profile-dom")

    # spine -> leaf -> node, every one drawn and open at this scale
    drawn_spines = {e.attrs["data-spine"]: e for e in page.having("data-spine", "details")}
    assert set(drawn_spines) == spines
    assert all("open" in e.attrs for e in drawn_spines.values())
    assert {e.attrs["data-leaf"] for e in page.having("data-leaf") if e.attrs.get("class") == "leaf"} == leaves
    cells = {e.attrs["data-node"]: e for e in page.having("data-node") if "node" in e.attrs["class"].split()}
    assert set(cells) == node_names
    assert {n: int(e.attrs["data-allocated"]) for n, e in cells.items()} == {
        n["name"]: n["allocated"] for n in cluster_view["nodes"]
    }
    assert sum(int(e.attrs["data-allocated"]) for e in cells.values()) == 16 + 4 + 4 + 8 + 16 + 8
    assert cells[holder].attrs["data-queue-main"] == "t-vision"
    assert "t-vision/detector" in cells[holder].attrs["title"]

    # the queue tree: every queue under its parent, indented, leaves with distinct colours, in tree order
    rows = queue_rows(page)
    assert list(rows) == ["root", "research", "t-robotics", "t-speech", "t-vision", "t-industry"]
    depth = {"root": 0, "research": 1, "t-industry": 1, "t-robotics": 2, "t-speech": 2, "t-vision": 2}
    for name, parent in DEV_TREE.items():
        assert rows[name].attrs["data-parent"] == (parent or ""), name
        assert int(rows[name].attrs["data-depth"]) == depth[name], name
        assert name in rows[name].text
    leaf_colours = {name: row.attrs.get("data-colour") for name, row in rows.items()
                    if row.attrs["data-leaf-queue"] == "true"}  # fmt: skip
    assert set(leaf_colours) == {"t-vision", "t-speech", "t-robotics", "t-industry"}
    assert len(set(leaf_colours.values())) == 4
    assert leaf_colours == {name: queues[name]["colour"] for name in leaf_colours}
    assert "data-colour" not in rows["research"].attrs
    assert {e.attrs["data-legend-queue"] for e in page.having("data-legend-queue")} == set(leaf_colours)
    industry = [r for r in page.having("data-queue", "tr") if r.attrs["data-queue"] == "t-industry"]
    assert {r.attrs["data-gpu-type"] for r in industry} == {"b200", "rtx-pro-6000"}

    # the waiting gang with its reason and place; running jobs are not listed
    waiting = {e.attrs["data-job"]: e for e in page.having("data-job", "tr")}
    assert set(waiting) == {"t-robotics/huge"}
    huge = waiting["t-robotics/huge"]
    assert huge.attrs["data-reason"] == "InsufficientCapacity"
    assert "InsufficientCapacity" in huge.text
    assert "t-robotics" in huge.text
    assert huge.attrs["title"].startswith("needs 4 x 8 b200")

    # the selected node's jobs, beside the map
    panel = page.first("data-selected", holder)
    assert panel.attrs["id"] == "node-panel"
    assert {e.attrs["data-panel-job"] for e in page.having("data-panel-job")} == {"t-vision/detector"}

    await screenshot(url, dev_map.shots / "map-dev.png", tmp_path / "profile-shot")


async def test_a_token_that_may_not_list_the_jobs_still_gets_the_map_and_the_queues(
    dev_map: Scene, tmp_path: Path
) -> None:
    _spines, leaves, node_names = topology("dev")
    page = await dump(dev_map.url("quotas"), tmp_path / "profile-dom")
    assert {e.attrs["data-leaf"] for e in page.having("data-leaf") if e.attrs.get("class") == "leaf"} == leaves
    assert {e.attrs["data-node"] for e in page.having("data-node") if "node" in e.attrs["class"].split()} == node_names
    assert set(queue_rows(page)) == set(DEV_TREE)
    assert not page.having("data-job", "tr")
    assert "No job waits." in page.first("id", "waiting").text


# ---- industrial-ai-cloud scale -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    yield from own_cluster(tmp_path_factory, "map-big", profile="industrial-ai-cloud")


BIG_TREE = {"root": None, "research": "root", "t-vision": "research", "t-speech": "research",
            "t-robotics": "research", "t-soofi": "root", "t-industry": "root", "t-pharma": "root"}  # fmt: skip


@pytest.fixture(scope="module")
async def big_map(big: cluster.LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    """Six leaf queues on 1,350 nodes: SOOFI's gang on its reserved spine, big gangs of three research queues,
    RTX PRO work, and a job over its queue's limit."""
    async with Client(connection.load(big.kubeconfig)) as admin:
        await quota(admin, "root", parent=None)
        await quota(admin, "research", guaranteed=2048, leaf=False)
        await quota(admin, "t-vision", parent="research", guaranteed=1024)
        await quota(admin, "t-speech", parent="research", guaranteed=512)
        await quota(admin, "t-robotics", parent="research", guaranteed=512)
        await quota(admin, "t-soofi", guaranteed=1040, reservation={"nodeSelector": {"leitstand.dev/pool": "soofi"}})
        await quota(admin, "t-industry", gpus={"rtx-pro-6000": {"guaranteed": 256}})
        await quota(admin, "t-pharma", gpus={"b200": {"guaranteed": 64, "limit": 64}})
        await job(admin, "t-soofi", "llm-pretrain", 64, topology={"required": "spine"})
        await job(admin, "t-vision", "detector", 48)
        await job(admin, "t-speech", "asr", 32)
        await job(admin, "t-speech", "tts", 3, gpus=4)
        await job(admin, "t-robotics", "policy", 24)
        await job(admin, "t-industry", "render", 6, gpuType="rtx-pro-6000")
        await job(admin, "t-pharma", "dock", 4)
        tokens = {"platform": await account(admin, "leitstand-system", "map-platform", PLATFORM, cluster_wide=True)}
        operator = Operator(big.kubeconfig, tmp_path_factory.mktemp("map-big-operator") / "operator.log")
        try:
            operator.wait_ready(within=90)
            scene = Scene(operator.port, tokens, tmp_path_factory.mktemp("map-big-shots"))
            running = {"t-soofi/llm-pretrain", "t-vision/detector", "t-speech/asr", "t-speech/tts",
                       "t-robotics/policy", "t-industry/render", "t-pharma/dock"}  # fmt: skip
            await settled(scene, admin, running=running, waiting={}, within=120)
            await job(admin, "t-pharma", "fold", 10)  # 80 GPUs above the 32 its queue's limit leaves
            await settled(scene, admin, running=running, waiting={"t-pharma/fold": "OverLimit"}, within=60)
            yield scene
        finally:
            operator.stop()


async def test_the_industrial_ai_cloud_map_collapses_its_spines_and_keeps_every_leaf_group_and_queue(
    big_map: Scene, tmp_path: Path
) -> None:
    spines, leaves, node_names = topology("industrial-ai-cloud")
    assert len(leaves) >= 40
    cluster_view = await big_map.get("/api/v1/cluster")
    page = await dump(big_map.url("platform"), tmp_path / "profile-dom")

    drawn_spines = {e.attrs["data-spine"]: e for e in page.having("data-spine", "details")}
    assert set(drawn_spines) == spines
    assert not [name for name, e in drawn_spines.items() if "open" in e.attrs], "spines start collapsed"
    assert {e.attrs["data-leaf"] for e in page.having("data-leaf") if e.attrs.get("class") == "leaf"} == leaves
    assert {e.attrs["data-leaf-chip"] for e in page.having("data-leaf-chip")} == leaves  # the summary rows' bars
    cells = {e.attrs["data-node"]: int(e.attrs["data-allocated"]) for e in page.having("data-node")
             if "node" in e.attrs["class"].split()}  # fmt: skip
    assert set(cells) == node_names
    assert cells == {n["name"]: n["allocated"] for n in cluster_view["nodes"]}
    assert sum(cells.values()) == (64 + 48 + 32 + 24 + 6 + 4) * 8 + 12

    rows = queue_rows(page)
    assert set(rows) == set(BIG_TREE)
    for name, parent in BIG_TREE.items():
        assert rows[name].attrs["data-parent"] == (parent or ""), name
    leaf_colours = [row.attrs["data-colour"] for row in rows.values() if row.attrs["data-leaf-queue"] == "true"]
    assert len(leaf_colours) == 6
    assert len(set(leaf_colours)) == 6

    fold = page.first("data-job", "t-pharma/fold")
    assert fold.attrs["data-reason"] == "OverLimit"
    assert "OverLimit" in fold.text
    assert fold.attrs["title"].startswith("needs 80 b200")

    # the screenshot opens the spine of a node of the vision gang, to show its leaf groups and nodes as well
    holder = next(n for n in cluster_view["nodes"] if [j["name"] for j in n["jobs"]] == ["detector"])
    url = big_map.url("platform", node=holder["name"])
    opened = await dump(url, tmp_path / "profile-open")
    assert [e.attrs["data-spine"] for e in opened.having("data-spine", "details") if "open" in e.attrs] == [
        holder["spine"]
    ]
    await screenshot(url, big_map.shots / "map-industrial-ai-cloud.png", tmp_path / "profile-shot")
