"""``leitstand jobs | explain | queues | top``: why jobs wait and where capacity goes, from a kubeconfig.

Read the resources' status that the operator writes (and nodes and pods for
``top``); never write. ``-n`` / ``-A`` choose namespaces as kubectl does, ``-o
json|yaml`` prints the rows as data.
"""

import asyncio
import datetime
import json
import time
from collections.abc import Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from leitstand.core import model
from leitstand.errors import UserError
from leitstand.kube import bodies, connection, objects, quantities, resources
from leitstand.kube.client import ApiError, Client
from leitstand.kube.objects import (
    Body,
    GPUQuota,
    Node,
    Pod,
    TrainingJob,
    annotations,
    labels,
    node_status,
    pod_spec,
    pod_status,
)

T = TypeVar("T")
GROUP = f"/apis/{resources.API_VERSION}"


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


KubeconfigOption = Annotated[
    Path | None, typer.Option("--kubeconfig", help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster).")
]
ContextOption = Annotated[str | None, typer.Option("--context", help="kubeconfig context (default: the current one).")]
AsOption = Annotated[str | None, typer.Option("--as", help="Impersonate this user; RBAC decides, as for kubectl.")]
AsGroupOption = Annotated[
    list[str] | None, typer.Option("--as-group", help="Impersonate this group too (repeatable; needs --as).")
]
NamespaceOption = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (default: the context's).")]
AllOption = Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table, json or yaml.")]


def console() -> Console:
    return Console(width=None if Console().is_terminal else 200, highlight=False, soft_wrap=True)


def connect(
    kubeconfig: Path | None, context: str | None, as_user: str | None, as_groups: list[str] | None
) -> connection.Connection:
    """The connection of kubectl's flags: ``--kubeconfig``, ``--context``, ``--as``, ``--as-group``."""
    return connection.load(kubeconfig, context=context, as_user=as_user, as_groups=as_groups or ())


def call(connected: connection.Connection, work: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
    """Runs ``work`` with a client on the connection; API errors become one clear line."""

    async def main() -> T:
        async with Client(connected) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except ApiError as error:
        if error.status == 404 and "the server could not find the requested resource" in error.message:
            raise UserError("the cluster has no Leitstand CRDs; install the chart (or apply crds/) first") from None
        if error.status == 401:
            raise UserError(
                f"the API server did not accept the credentials of user {connected.credentials.user!r}, "
                "not even freshly loaded ones: 401 Unauthorized; log in again (or check the kubeconfig's user)"
            ) from None
        raise UserError(f"the API server refused: {error.status} {error.reason}: {error.message}") from None
    except OSError as error:
        raise UserError(f"cannot reach the API server at {connected.server}: {error}") from None


def age(timestamp: str | None, now: float | None = None) -> str:
    """kubectl's compact age: 42s, 7m, 3h, 5d."""
    moment = bodies.timestamp(timestamp)
    if moment is None:
        return "-"
    seconds = int((now if now is not None else time.time()) - moment)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def emit(rows: list[dict[str, Any]], output: Output, columns: list[str], *, title: str | None = None) -> None:
    if output is Output.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if output is Output.yaml:
        typer.echo(yaml.safe_dump(rows, sort_keys=False), nl=False)
        return
    if not rows:
        console().print("No resources found.")
        return
    table = Table(box=None, show_edge=False, pad_edge=False, title=title, header_style="bold")
    for column in columns:
        table.add_column(column.upper().replace("_", " "), no_wrap=True)
    for row in rows:
        table.add_row(*(str(row.get(column) if row.get(column) is not None else "-") for column in columns))
    console().print(table)


def jobs(
    namespace: NamespaceOption = None,
    all_namespaces: AllOption = False,
    output: OutputOption = Output.table,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    as_user: AsOption = None,
    as_groups: AsGroupOption = None,
) -> None:
    """List TrainingJobs, and the gangs of pods Leitstand schedules but did not create (Jobs, PyTorchJobs,
    annotated gangs, single pods): queue, GPUs, phase, why they wait, place in the queue, expected start
    (ETA), age."""

    async def work(client: Client) -> tuple[list[TrainingJob], list[Body]]:
        ns = None if all_namespaces else (namespace or client.connection.namespace)
        path = f"{GROUP}/trainingjobs" if ns is None else f"{GROUP}/namespaces/{ns}/trainingjobs"
        return list((await client.list(path))["items"]), await _pod_groups(client, ns)

    rows = []
    connected = connect(kubeconfig, context, as_user, as_groups)
    trainingjobs, groups = call(connected, work)
    for body in trainingjobs:
        status = objects.status(body)
        rows.append({
            "namespace": body["metadata"]["namespace"], "name": body["metadata"]["name"], "kind": "TrainingJob",
            "queue": status.get("queue"), "gpus": status.get("gpus"), "phase": status.get("phase"),
            "reason": status.get("reason"), "position": status.get("queuePosition"),
            "eta": status.get("estimatedStartTime"), "age": age(body["metadata"].get("creationTimestamp")),
            "message": status.get("message"),
        })  # fmt: skip
    rows += groups
    rows.sort(key=lambda row: (row["namespace"], row["name"], row["kind"]))
    columns = ["name", "kind", "queue", "gpus", "phase", "reason", "position", "eta", "age"]
    emit(rows, output, ["namespace", *columns] if all_namespaces else columns)


GangKey = tuple[str, str, str]  # (namespace, kind as ``leitstand jobs`` shows it, name)


async def _gangs(client: Client, namespace: str | None) -> dict[GangKey, tuple[list[Pod], Body | None]]:
    """The gangs of pods with ``schedulerName: leitstand`` that no TrainingJob owns, grouped as the operator
    groups them (``bodies.pod_group``), each with its owner's object reference (None for a single pod or an
    annotated gang); none when the caller may not list pods."""

    async def listed(path: str) -> list[Any]:
        where = path if namespace is None else path.replace("/{ns}", f"/namespaces/{namespace}")
        try:
            return list((await client.list(where.replace("/{ns}", "")))["items"])
        except ApiError as error:
            if error.status in {403, 404}:  # not allowed, or the kind is not served
                return []
            raise

    pods: list[Pod] = await listed("/api/v1/{ns}/pods")
    owners = {
        (kind, body["metadata"]["namespace"], body["metadata"]["name"]): body
        for kind, path in bodies.OWNER_COLLECTIONS
        for body in await listed(path)
    }
    gangs: dict[GangKey, tuple[list[Pod], Body | None]] = {}
    for pod in pods:
        meta = pod["metadata"]
        ours = bodies.is_ours(pod) and bodies.live(pod) and not meta.get("deletionTimestamp")
        if not ours or bodies.JOB_LABEL in (meta.get("labels") or {}):
            continue
        group = bodies.pod_group(pod, owners)
        if group is None:
            gangs[(meta["namespace"], "Pod", meta["name"])] = ([pod], None)
            continue
        key = (meta["namespace"], model.POD_GROUP_KINDS[group.kind], bodies.group_name(pod, group))
        gangs.setdefault(key, ([], group.owner))[0].append(pod)
    return gangs


async def _leaf_queues(client: Client) -> dict[str, str]:
    """Each namespace's queue, as the operator finds it: the one leaf GPUQuota that lists it (none when two
    do); empty when the caller may not list GPUQuotas."""
    try:
        quotas = list((await client.list(f"{GROUP}/gpuquotas"))["items"])
    except ApiError as error:
        if error.status in {403, 404}:
            return {}
        raise
    parents = {(body.get("spec") or {}).get("parent") for body in quotas}
    claims: dict[str, list[str]] = {}
    for body in quotas:
        if body["metadata"]["name"] not in parents:
            for namespace in (body.get("spec") or {}).get("namespaces") or []:
                claims.setdefault(namespace, []).append(body["metadata"]["name"])
    return {namespace: names[0] for namespace, names in claims.items() if len(names) == 1}


def _said(members: list[Pod]) -> tuple[bool, str, str]:
    """Whether every pod of a gang is bound, and else the reason and message its ``PodScheduled`` condition
    gives (the operator writes ``Reason: message``)."""
    bound = all(pod_spec(pod).get("nodeName") for pod in members)
    said = next((str(c.get("message") or "") for pod in members for c in pod_status(pod).get("conditions") or []
                 if c.get("type") == "PodScheduled" and c.get("status") == "False"), "")  # fmt: skip
    reason, _, message = said.partition(": ")
    return bound, reason or "Pending", message or f"{len(members)} pods waiting"


async def _pod_groups(client: Client, namespace: str | None) -> list[Body]:
    """Rows for the gangs of pods Leitstand schedules but did not create (``_gangs``)."""
    rows = []
    gangs = await _gangs(client, namespace)
    queues = await _leaf_queues(client) if gangs else {}
    for (ns, kind, name), (members, _owner) in gangs.items():
        bound, reason, message = _said(members)
        gpus = sum(bodies.pod_requests(pod)[0] for pod in members)
        created = min(str(p["metadata"].get("creationTimestamp") or "") for p in members)
        rows.append({
            "namespace": ns, "name": name, "kind": kind, "queue": queues.get(ns), "gpus": gpus,
            "phase": "Running" if bound else "Queued", "reason": None if bound else reason,
            "position": None, "age": age(created),
            "eta": None if bound else annotations(members[0]).get(bodies.ESTIMATED_START_ANNOTATION),
            "message": None if bound else message,
        })  # fmt: skip
    return rows


_KINDS = {kind.lower(): kind for kind in model.POD_GROUP_KINDS.values()} | {
    plural: kind for plural, kind in model.POD_GROUP_KINDS.items()
}


def explain(
    name: Annotated[
        str,
        typer.Argument(
            help="The TrainingJob, or KIND/NAME for a gang of pods Leitstand did not create, as `leitstand jobs` "
            "lists it: job/NAME, pytorchjob/NAME, jobset/NAME, podgroup/NAME, gang/NAME or pod/NAME."
        ),
    ],
    namespace: NamespaceOption = None,
    output: OutputOption = Output.table,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    as_user: AsOption = None,
    as_groups: AsGroupOption = None,
) -> None:
    """Why a job waits or where it runs: reason, the numbers behind it, queue position, expected start,
    placement, Events."""
    kind, _, short = name.rpartition("/")
    if kind and kind.lower() not in {"trainingjob", "trainingjobs", "tj"} and kind.lower() not in _KINDS:
        raise UserError(
            f"unknown kind {kind!r} in {name!r}: give a TrainingJob's name, or job/, pytorchjob/, jobset/, "
            "podgroup/, gang/ or pod/ and the name `leitstand jobs` shows"
        )
    connected = connect(kubeconfig, context, as_user, as_groups)
    if kind and kind.lower() in _KINDS:
        report = call(connected, lambda client: _explain_gang(client, namespace, _KINDS[kind.lower()], short))
    else:
        report = call(connected, lambda client: _explain_job(client, namespace, short))
    if output is not Output.table:
        emit([report], output, [])
        return
    out = console()
    keys = ("job", "queue", "phase", "reason", "message", "position", "eta", "gang", "priority", "topology", "restarts")
    for key in keys:
        value = report.get(key)
        if value is not None:
            label = "ETA:" if key == "eta" else key.capitalize() + ":"
            out.print(f"[bold]{label:<10}[/] {value}")
    placement = report.get("placement")
    if placement:
        nodes = placement.get("nodes") or []
        where = ", ".join(placement.get("domains") or []) or ", ".join(sorted(set(nodes)))
        out.print(f"[bold]{'Placement:':<10}[/] {where} ({len(set(nodes))} nodes)")
    if report["events"]:
        out.print("[bold]Events:[/]")
        for line in report["events"]:
            out.print(f"  {line}")


async def _events(client: Client, namespace: str, uids: set[str]) -> list[str]:
    """The last ten Events about any of ``uids``, oldest first, as lines; one line saying so when the caller
    may not list Events."""
    try:
        if len(uids) == 1:
            params = {"fieldSelector": f"involvedObject.uid={next(iter(uids))}"}
            found = (await client.get(f"/api/v1/namespaces/{namespace}/events", params=params)).get("items") or []
        else:
            found = (await client.list(f"/api/v1/namespaces/{namespace}/events")).get("items") or []
            found = [e for e in found if (e.get("involvedObject") or {}).get("uid") in uids]
    except ApiError as error:
        if error.status != 403:
            raise
        return [f"(you may not list Events in namespace {namespace})"]
    found.sort(key=lambda e: e.get("lastTimestamp") or "")
    return [f"{e.get('type')} {e.get('reason')}: {e.get('message')}" for e in found[-10:]]


async def _explain_job(client: Client, namespace: str | None, name: str) -> dict[str, Any]:
    """``explain``'s report of a TrainingJob, from its status and Events."""
    ns = namespace or client.connection.namespace
    try:
        body = await client.get(f"{GROUP}/namespaces/{ns}/trainingjobs/{name}")
    except ApiError as error:
        if error.status == 404:
            raise UserError(
                f"no TrainingJob {name} in namespace {ns}; list them with `leitstand jobs -n {ns}` (a gang of "
                f"pods is KIND/NAME, such as job/{name})"
            ) from None
        raise
    status: Body = body.get("status") or {}  # a report of the raw body, every field as sent
    spec = body["spec"]
    return {
        "job": f"{body['metadata']['namespace']}/{body['metadata']['name']}",
        "queue": status.get("queue"),
        "phase": status.get("phase"),
        "reason": status.get("reason"),
        "message": status.get("message"),
        "position": status.get("queuePosition"),
        "eta": status.get("estimatedStartTime"),
        "gang": f"{spec['replicas']} x {spec['gpusPerReplica']} {spec.get('gpuType') or 'any GPU'}",
        "priority": spec.get("priority"),
        "topology": spec.get("topology"),
        "placement": status.get("placement"),
        "restarts": status.get("restarts"),
        "events": await _events(client, ns, {body["metadata"]["uid"]}),
    }


async def _explain_gang(client: Client, namespace: str | None, kind: str, name: str) -> dict[str, Any]:
    """``explain``'s report of a gang of pods Leitstand did not create: what its pods' ``PodScheduled``
    condition, annotations and placement say, and the Events about its pods and its owner."""
    ns = namespace or client.connection.namespace
    found = (await _gangs(client, ns)).get((ns, kind, name))
    if found is None:
        try:
            await client.get(f"/api/v1/namespaces/{ns}/pods", params={"limit": "1"})
        except ApiError as error:
            if error.status == 403:
                raise UserError(
                    f"you may not list pods in namespace {ns}, which explaining a {kind} needs; ask for that "
                    "right, or read the status API's /api/v1/jobs"
                ) from None
            raise
        raise UserError(
            f"no {kind} {name} whose pods Leitstand schedules in namespace {ns}; list them with "
            f"`leitstand jobs -n {ns}`"
        )
    members, owner = found
    bound, reason, message = _said(members)
    notes = annotations(members[0])
    per_pod = {bodies.pod_requests(pod)[0] for pod in members}
    gpus = f"{per_pod.pop()} GPUs" if len(per_pod) == 1 else "GPUs per pod: " + "/".join(map(str, sorted(per_pod)))
    topology = {
        level: notes[annotation]
        for level, annotation in (("required", bodies.REQUIRED_ANNOTATION), ("preferred", bodies.PREFERRED_ANNOTATION))
        if notes.get(annotation)
    }
    uids = {str(uid) for body in [*members, owner or {}] if (uid := (body.get("metadata") or body).get("uid"))}
    return {
        "job": f"{ns}/{kind}/{name}",
        "queue": (await _leaf_queues(client)).get(ns),
        "phase": "Running" if bound else "Queued",
        "reason": None if bound else reason,
        "message": None if bound else message,
        "position": None,
        "eta": None if bound else notes.get(bodies.ESTIMATED_START_ANNOTATION),
        "gang": f"{len(members)} x {gpus}",
        "priority": notes.get(bodies.PRIORITY_ANNOTATION),
        "topology": topology or None,
        "placement": {"nodes": [pod_spec(pod).get("nodeName") for pod in members]} if bound else None,
        "restarts": None,
        "events": await _events(client, ns, uids),
    }


def queues(
    output: OutputOption = Output.table,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    as_user: AsOption = None,
    as_groups: AsGroupOption = None,
) -> None:
    """The GPUQuota tree with guaranteed, limit, fair share, allocated, reclaiming and pending GPUs per type, and
    the over-quota GPU-hours the fair share remembers (decayed)."""

    async def work(client: Client) -> list[GPUQuota]:
        return list((await client.list(f"{GROUP}/gpuquotas"))["items"])

    quotas = {b["metadata"]["name"]: b for b in call(connect(kubeconfig, context, as_user, as_groups), work)}
    children: dict[str | None, list[str]] = {}
    for name, body in sorted(quotas.items()):
        parent = body.get("spec", {}).get("parent")
        children.setdefault(parent if parent in quotas else None, []).append(name)
    rows: list[dict[str, Any]] = []

    def visit(name: str, depth: int) -> None:
        body = quotas[name]
        spec, status = body.get("spec", {}), objects.status(body)
        numbers = status.get("gpus") or {}
        for gpu_type in sorted(set(numbers) | set(spec.get("gpus") or {})) or ["-"]:
            share = (spec.get("gpus") or {}).get(gpu_type) or {}
            got = numbers.get(gpu_type) or {}
            rows.append({
                "queue": "  " * depth + name, "gpu_type": gpu_type, "guaranteed": share.get("guaranteed", 0),
                "limit": share.get("limit"), "fair_share": got.get("fairShare"), "allocated": got.get("allocated"),
                "reclaiming": got.get("reclaiming"), "pending": got.get("pending"),
                "running_jobs": status.get("runningJobs", 0), "waiting_jobs": status.get("pendingJobs", 0),
                "used_gpu_h": round((status.get("usage") or {}).get("overQuotaGPUSeconds", 0) / 3600, 1),
            })  # fmt: skip
        for child in children.get(name, []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    if output is not Output.table:
        for row in rows:
            row["queue"] = row["queue"].strip()
    emit(
        rows,
        output,
        [
            "queue",
            "gpu_type",
            "guaranteed",
            "limit",
            "fair_share",
            "allocated",
            "reclaiming",
            "pending",
            "running_jobs",
            "waiting_jobs",
            "used_gpu_h",
        ],
    )


def top(
    once: Annotated[bool, typer.Option(help="Print one view and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    as_user: AsOption = None,
    as_groups: AsGroupOption = None,
) -> None:
    """A live view of the cluster by leaf group: nodes, GPUs allocated and free, whole free nodes."""
    settings = bodies.Settings()
    leaf_label = dict(settings.topology).get(settings.levels[-2]) if len(settings.levels) >= 2 else None

    async def work(client: Client) -> Table:
        nodes: list[Node] = (await client.list("/api/v1/nodes"))["items"]
        pods: list[Pod] = (await client.list("/api/v1/pods"))["items"]
        return leaf_table(nodes, pods, leaf_label or "")

    connected = connect(kubeconfig, context, as_user, as_groups)
    if once:
        console().print(call(connected, work))
        return
    with Live(call(connected, work), console=console(), refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(call(connected, work))
        except KeyboardInterrupt:
            pass


def leaf_table(nodes: list[Node], pods: list[Pod], leaf_label: str) -> Table:
    used: dict[str, int] = {}
    for pod in pods:
        name = pod_spec(pod).get("nodeName")
        if name and bodies.live(pod):
            used[name] = used.get(name, 0) + bodies.pod_requests(pod)[0]
    leaves: dict[str, list[int]] = {}
    for node in nodes:
        gpus = quantities.units((node_status(node).get("allocatable") or {}).get(bodies.GPU_RESOURCE))
        if not gpus:
            continue
        held = min(used.get(node["metadata"]["name"], 0), gpus)
        entry = leaves.setdefault(labels(node).get(leaf_label, "-"), [0, 0, 0, 0])
        entry[0] += 1
        entry[1] += gpus
        entry[2] += held
        entry[3] += held == 0
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold", title=f"GPUs by leaf group ({stamp})")
    for column in ("LEAF", "NODES", "GPUS", "ALLOCATED", "FREE", "WHOLE FREE NODES", "USE"):
        table.add_column(column, no_wrap=True)
    for leaf, (count, gpus, held, whole) in sorted(leaves.items()):
        filled = round(20 * held / gpus) if gpus else 0
        table.add_row(
            leaf, str(count), str(gpus), str(held), str(gpus - held), str(whole), "█" * filled + "·" * (20 - filled)
        )
    return table
