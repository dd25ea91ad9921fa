"""``leitstand simulate``: Leitstand's core and the baselines on simulated time, over a cluster and a trace.

The cluster is a profile (nodes made exactly as ``dev-cluster`` makes them, and
read through the operator's own label mapping) or a node-list CSV such as the
Alibaba v2023 ``openb_node_list_gpu_node.csv``. Tenants map to the leaf queues
of a GPUQuota tree given as the YAML ``kubectl apply`` takes; without one, every
tenant gets a leaf of equal weight under a root. ``--out`` receives
``report.json`` and the plots.
"""

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Annotated, Any, cast

import pydantic
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leitstand import __version__
from leitstand.controller import configuration
from leitstand.core.model import Node, Policy, Queue
from leitstand.devcluster import profiles
from leitstand.errors import UserError, read_yaml
from leitstand.kube import bodies, objects, resources
from leitstand.sim import clusters, engine, plots, study, traces

console = Console(stderr=True)


def load_cluster(spec: str) -> tuple[tuple[Node, ...], Policy, str]:
    """Nodes and the policy for a profile name or path, or a node-list CSV."""
    if spec.endswith(".csv"):
        try:
            nodes = clusters.node_list(Path(spec))
        except traces.TraceError as error:
            raise UserError(str(error)) from None
        return nodes, Policy(topology_levels=clusters.LEVELS, default_preferred_level=None), f"node list {spec}"
    profile = profiles.load(spec)
    settings = bodies.Settings()
    nodes = tuple(
        dataclasses.replace(bodies.to_node(cast(objects.Node, body), (0, 0, 0), settings), ready=True)
        for body in profiles.nodes(profile)
    )
    return nodes, Policy(topology_levels=settings.levels), f"profile {profile.name}"


def tuned(policy: Policy, *, reservations: int | None = None, starvation_seconds: float | None = None) -> Policy:
    """``policy`` with the reservation settings given (None keeps the policy's own)."""
    if reservations is not None:
        policy = dataclasses.replace(policy, reservations=reservations)
    if starvation_seconds is not None:
        policy = dataclasses.replace(policy, starvation_seconds=starvation_seconds)
    return policy


def quota_specs(path: Path) -> dict[str, resources.GPUQuotaSpec]:
    """The GPUQuotas of a YAML file by name (other kinds are ignored), checked as the API server would."""
    documents = read_yaml(path, documents=True)
    specs: dict[str, resources.GPUQuotaSpec] = {}
    for index, document in enumerate(documents, start=1):
        if not isinstance(document, dict) or document.get("kind") != "GPUQuota":
            continue
        name = (document.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise UserError(f"{path}: GPUQuota number {index} has no metadata.name")
        if name in specs:
            raise UserError(f"{path}: two GPUQuotas share the name {name}")
        try:
            specs[name] = resources.GPUQuotaSpec.model_validate(document.get("spec") or {})
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise UserError(f"{path}: GPUQuota {name}: spec.{where}: {first['msg']}") from None
    if not specs:
        raise UserError(f"{path} holds no GPUQuota; give the queue tree as GPUQuota manifests")
    return specs


def load_quotas(path: Path) -> tuple[Queue, ...]:
    """The GPUQuotas of a YAML file as the core's queues, checked as the API server would."""
    documents = [d for d in read_yaml(path, documents=True) if isinstance(d, dict) and d.get("kind") == "GPUQuota"]
    quota_specs(path)
    queues = []
    for document in documents:
        queue = bodies.to_queue(cast(objects.GPUQuota, document))
        assert queue is not None  # validated just above
        queues.append(queue)
    return tuple(queues)


def _check_tenants(queues: tuple[Queue, ...], tenants: set[str], where: Path) -> None:
    parents = {queue.parent for queue in queues}
    claimed = {ns for queue in queues if queue.name not in parents for ns in queue.namespaces}
    missing = sorted(tenants - claimed)
    if missing:
        shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
        raise UserError(
            f"{where}: no leaf GPUQuota claims the trace's tenant{'s' if len(missing) > 1 else ''} {shown}; "
            "add each tenant to some leaf's spec.namespaces"
        )


def simulate(
    cluster: Annotated[
        str, typer.Option(help="A profile (dev, soofi, industrial-ai-cloud, or a YAML path) or a node-list CSV.")
    ],
    trace: Annotated[
        list[Path],
        typer.Option(help="A trace CSV (Alibaba v2023 pods, Microsoft ITP, or the generic header); repeatable."),
    ],
    out: Annotated[Path, typer.Option(help="Directory for report.json and the plots (created).")],
    quotas: Annotated[
        Path | None, typer.Option(help="GPUQuota manifests (YAML); default: one equal queue per tenant.")
    ] = None,
    scheduler: Annotated[
        list[str] | None,
        typer.Option(help=f"Schedulers to run (repeatable): {', '.join(study.SCHEDULERS)}. Default: all."),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between scheduling cycles (the debounce).")] = 10.0,
    limit: Annotated[int | None, typer.Option(help="Only the first N jobs of the trace.")] = None,
    until: Annotated[float | None, typer.Option(help="Stop at this simulated second.")] = None,
    fill: Annotated[
        bool,
        typer.Option(help="Fill experiment: arrivals only, one per cycle, stop at the first job that does not fit."),
    ] = False,
    runtime_limit_factor: Annotated[
        float,
        typer.Option(
            help="A job's runtime limit is F x its duration (users over-estimate), unless the trace's "
            "runtime_limit_seconds column gives one; 0: no limits."
        ),
    ] = 2.0,
    checkpoint_interval: Annotated[
        float,
        typer.Option(
            help="Every job saves its work this often (seconds): an evicted job resumes from its last save and "
            "loses the rest; Leitstand is told the interval. 0: jobs never save and lose their whole run."
        ),
    ] = 0.0,
    grace_seconds: Annotated[
        float, typer.Option(help="Seconds an evicted job's pods take to terminate, holding their nodes.")
    ] = 30.0,
    preemption_notice: Annotated[
        float | None,
        typer.Option(help="Seconds every queue's evicted jobs run on before their pods stop (default: the quotas')."),
    ] = None,
    usage_half_life: Annotated[
        float,
        typer.Option(help="Half-life (seconds) of the over-quota usage the fair share remembers; 0 forgets."),
    ] = 7 * 24 * 3600.0,
    reservations: Annotated[
        int | None,
        typer.Option(
            help="At most this many waiting gangs hold reservations at once, as the operator's `reservations` "
            f"(default {Policy().reservations}): try a value on your own trace before you set it."
        ),
    ] = None,
    starvation_seconds: Annotated[
        float | None,
        typer.Option(
            help="Seconds a gang waits before it may reserve nodes, as the operator's `starvationSeconds` "
            f"(default {Policy().starvation_seconds:g})."
        ),
    ] = None,
) -> None:
    """Replay a job trace on a simulated cluster under Leitstand and the baselines, side by side."""
    names = scheduler or list(study.SCHEDULERS)
    unknown = [name for name in names if name not in study.SCHEDULERS]
    if unknown:
        raise UserError(f"unknown scheduler {unknown[0]!r}; choose from {', '.join(study.SCHEDULERS)}")
    if interval < 0 or (limit is not None and limit < 1):
        raise UserError("--interval must be at least 0 and --limit at least 1")
    if runtime_limit_factor != 0 and not 1 <= runtime_limit_factor <= 1000:
        raise UserError("--runtime-limit-factor must be 0 (no limits) or between 1 and 1000")
    negative = [flag for flag, value in (("--checkpoint-interval", checkpoint_interval),
                ("--grace-seconds", grace_seconds), ("--preemption-notice", preemption_notice or 0.0),
                ("--usage-half-life", usage_half_life), ("--starvation-seconds", starvation_seconds or 0.0))
                if value < 0]  # fmt: skip
    if negative:
        raise UserError(f"{negative[0]} must be 0 or more seconds")
    if reservations is not None and not 0 <= reservations <= configuration.MAX_RESERVATIONS:
        raise UserError(f"--reservations must be between 0 and {configuration.MAX_RESERVATIONS}, as in the chart")
    nodes, policy, cluster_name = load_cluster(cluster)
    policy = tuned(policy, reservations=reservations, starvation_seconds=starvation_seconds)
    try:
        jobs = traces.load(trace)
    except traces.TraceError as error:
        raise UserError(str(error)) from None
    if limit is not None:
        jobs = jobs[:limit]
    if not jobs:
        raise UserError("the trace has no jobs")
    tenants = {job.tenant for job in jobs}
    if quotas is not None:
        queues = load_quotas(quotas)
        _check_tenants(queues, tenants, quotas)
    else:
        queues = study.default_queues(sorted(tenants))
    jobs, dropped = study.fitting(jobs, nodes)
    if dropped:
        console.print(f"dropped {len(dropped)} job(s) that could never fit on {cluster_name} (e.g. {dropped[0].name})")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {out}: {error.strerror}") from None
    options = engine.Options(
        interval=interval,
        until=until if until is not None else math.inf,
        fill=fill,
        runtime_limit_factor=runtime_limit_factor or None,
        checkpoint_interval=checkpoint_interval or None,
        grace_seconds=grace_seconds,
        preemption_notice=preemption_notice,
        usage_half_life=usage_half_life,
    )
    setup = {
        "leitstand": __version__,
        "cluster": cluster_name,
        "nodes": len(nodes),
        "gpus": sum(node.gpus for node in nodes if node.gpu_type is not None),
        "traces": [str(path) for path in trace],
        "jobs": len(jobs),
        "droppedNeverFitting": len(dropped),
        "tenants": sorted(tenants),
        "queues": [queue.name for queue in queues],
        "intervalSeconds": interval,
        "fill": fill,
        "untilSeconds": until,
        "runtimeLimitFactor": runtime_limit_factor or None,
        "checkpointIntervalSeconds": checkpoint_interval or None,
        "graceSeconds": grace_seconds,
        "preemptionNoticeSeconds": preemption_notice,
        "usageHalfLifeSeconds": usage_half_life,
        "reservations": policy.reservations,
        "starvationSeconds": policy.starvation_seconds,
    }
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:

        def tracker(name: str) -> engine.Progress:
            task = bar.add_task(name, total=len(jobs), status="")

            def update(now: float, done: int, total: int) -> None:
                bar.update(task, completed=done, status=f"{done}/{total} jobs, day {now / 86400:.1f}")

            return update

        document = study.run(names, nodes, queues, jobs, policy, options, setup=setup, progress=tracker)
    document["setup"]["wallSeconds"] = round(time.monotonic() - started, 1)
    _write(out / "report.json", document)
    try:
        written = plots.draw(document, out)
    except plots.PlotsUnavailable as error:
        console.print(f"[yellow]{error}[/]; wrote only report.json")
        written = []
    _print_table(document)
    console.print(f"wrote {out / 'report.json'}" + "".join(f", {path.name}" for path in written))


def _write(path: Path, document: dict[str, Any]) -> None:
    try:
        path.write_text(json.dumps(document, indent=1) + "\n")
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror}") from None


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value / 3600:.2f} h"


def _print_table(document: dict[str, Any]) -> None:
    table = Table(title="simulation", title_justify="left")
    columns = ("scheduler", "alloc (working)", "delay mean", "delay p95", "JCT mean", "unalloc @ 1st fail", "evictions")
    for column in columns:
        table.add_column(column, justify="left" if column == "scheduler" else "right")
    for summary in document["schedulers"]:
        failure = summary["firstFailure"]
        allocation, working = summary["meanAllocation"], summary["meanWorkingAllocation"]
        table.add_row(
            summary["scheduler"],
            "-" if allocation is None or working is None else f"{allocation:.0%} ({working:.0%})",
            _hours(summary["queueingDelaySeconds"]["mean"]),
            _hours(summary["queueingDelaySeconds"]["p95"]),
            _hours(summary["completionTimeSeconds"]["mean"]),
            "none" if failure is None else str(failure["unallocatedGPUs"]),
            str(summary["evictions"]),
        )
    Console().print(table)
