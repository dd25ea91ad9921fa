"""PNG plots of a simulation report (matplotlib, the ``sim`` extra), drawn from report.json's numbers.

- ``allocation.png``: allocated GPUs over time, every scheduler on one axis;
- ``queueing.png``: mean and p95 queueing delay and completion time per scheduler;
- ``fragmentation.png``: unallocated GPUs at the first placement failure per scheduler;
- ``fairshare.png``: per tenant, Leitstand's allocation against its fair share over time;
- ``reservations.png``: Leitstand's allocation and reservations over time, and its estimate errors;
- ``preemption.png`` (``preemption``): per variant of what jobs save and what Leitstand is told, the GPU-hours
  evictions lost per tenant, beside the mean queueing delay and the distance from fair share.
"""

import itertools
from pathlib import Path
from typing import Any

COLOURS = {
    "leitstand": "#0b6e4f",
    "leitstand-hold": "#8fd3b6",
    "kube-scheduler-like": "#c84c09",
    "fifo-gang": "#6c757d",
    "best-fit": "#3a86ff",
}


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotsUnavailable("plots need matplotlib: pip install 'leitstand[sim]'") from None
    return plt


def draw(report: dict[str, Any], out: Path) -> list[Path]:
    """Writes the plots of ``report`` into ``out``; returns their paths."""
    plt = _pyplot()
    schedulers = report["schedulers"]
    written = []
    hours = 3600.0

    figure, axis = plt.subplots(figsize=(10, 4.5))
    for summary in schedulers:
        data = summary["series"]
        name = summary["scheduler"]
        axis.step([t / hours for t in data["time"]], data["allocated"], where="post", label=name,
                  color=COLOURS.get(name), linewidth=2 if name == "leitstand" else 1.2)  # fmt: skip
    if schedulers:
        axis.axhline(schedulers[0]["capacityGPUs"], color="black", linestyle=":", linewidth=1, label="capacity")
    axis.set(xlabel="simulated hours", ylabel="allocated GPUs", title="GPU allocation over time")
    axis.legend(loc="lower right")
    written.append(_save(figure, plt, out / "allocation.png"))

    figure, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    names = [s["scheduler"] for s in schedulers]
    colours = [COLOURS.get(name, "#999999") for name in names]
    for axis, key, title in (
        (axes[0], "queueingDelaySeconds", "queueing delay"),
        (axes[1], "completionTimeSeconds", "job completion time"),
    ):
        means = [(s[key]["mean"] or 0) / hours for s in schedulers]
        p95s = [(s[key]["p95"] or 0) / hours for s in schedulers]
        positions = range(len(names))
        axis.bar([p - 0.2 for p in positions], means, width=0.4, color=colours, label="mean")
        axis.bar([p + 0.2 for p in positions], p95s, width=0.4, color=colours, alpha=0.45, label="p95")
        axis.set_xticks(list(positions), names, rotation=20, ha="right")
        axis.set(ylabel="hours", title=f"{title} (mean, p95 pale)")
    written.append(_save(figure, plt, out / "queueing.png"))

    figure, axis = plt.subplots(figsize=(7, 4.5))
    unallocated = [(s["firstFailure"] or {}).get("unallocatedGPUs") for s in schedulers]
    axis.bar(names, [value or 0 for value in unallocated], color=colours)
    for index, value in enumerate(unallocated):
        axis.annotate("no failure" if value is None else str(value), (index, value or 0), ha="center", va="bottom")
    axis.set(ylabel="GPUs", title="unallocated GPUs at the first placement failure")
    axis.tick_params(axis="x", labelrotation=20)
    written.append(_save(figure, plt, out / "fragmentation.png"))

    ours = next((s for s in schedulers if s["scheduler"] == "leitstand"), None)
    if ours is not None and ours["series"]["tenants"]:
        tenants = sorted(ours["series"]["tenants"].items())[:9]
        rows = (len(tenants) + 2) // 3
        figure, axes = plt.subplots(rows, min(len(tenants), 3), figsize=(12, 3.2 * rows), squeeze=False)
        time = [t / hours for t in ours["series"]["time"]]
        for axis, (tenant, data) in zip(axes.flat, tenants, strict=False):
            axis.step(time, data["allocated"], where="post", color=COLOURS["leitstand"], label="allocated")
            axis.step(time, data["fairShare"], where="post", color="black", linestyle="--", label="fair share")
            axis.set(title=tenant, xlabel="simulated hours", ylabel="GPUs")
        for axis in list(axes.flat)[len(tenants) :]:
            axis.set_visible(False)
        axes.flat[0].legend(loc="upper right")
        figure.suptitle("Leitstand: allocation against fair share per tenant")
        written.append(_save(figure, plt, out / "fairshare.png"))
    if ours is not None and (ours.get("heroJobs") or {}).get("estimateErrorRatios"):
        written.append(_hero_jobs(plt, ours, out, hours))
    return written


def _hero_jobs(plt: Any, ours: dict[str, Any], out: Path, hours: float) -> Path:
    """``reservations.png``: Leitstand's allocation with the gangs holding reservations over time, and the
    error of its start estimates (at submission and at the last estimate) as a share of the actual wait."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    data = ours["series"]
    time = [t / hours for t in data["time"]]
    left.step(time, data["allocated"], where="post", color=COLOURS["leitstand"], label="allocated GPUs")
    left.axhline(ours["capacityGPUs"], color="black", linestyle=":", linewidth=1, label="capacity")
    reserved = left.twinx()
    reserved.step(time, data["reservations"], where="post", color="#b5179e", linewidth=0.8, label="reservations")
    reserved.set(ylabel="gangs holding a reservation")
    left.set(xlabel="simulated hours", ylabel="GPUs", title="allocation while gangs hold reservations")
    left.legend(loc="lower left")
    ratios = ours["heroJobs"]["estimateErrorRatios"]
    bins = [0, 0.1, 0.25, 0.5, 1, 2, 4, 8, 1e9]
    labels = ["<0.1", "<0.25", "<0.5", "<1", "<2", "<4", "<8", "8+"]
    for offset, (key, label, colour) in enumerate(
        (("atSubmission", "at submission", "#0b6e4f"), ("atLastEstimate", "at the last estimate", "#3a86ff"))
    ):
        values = ratios.get(key) or []
        counts = [sum(1 for v in values if low <= v < high) for low, high in itertools.pairwise(bins)]
        right.bar([i + offset * 0.4 for i in range(len(counts))], counts, width=0.4, color=colour, label=label)
    right.set_xticks([i + 0.2 for i in range(len(labels))], labels)
    right.set(xlabel="|actual - estimated start| / actual wait", ylabel="jobs", title="start estimates")
    right.legend(loc="upper right")
    return _save(figure, plt, out / "reservations.png")


def preemption(lines: list[dict[str, Any]], out: Path) -> Path:
    """``preemption.png`` from the preemption study's lines (``variant``, ``lostGPUHoursByTenant``,
    ``meanQueueingDelayHours``, ``distanceFromFairShare``)."""
    plt = _pyplot()
    figure, (lost, delay) = plt.subplots(1, 2, figsize=(11, 4.5))
    variants = [line["variant"] for line in lines]
    tenants = sorted({t for line in lines for t in line["lostGPUHoursByTenant"]})
    bottom = [0.0] * len(lines)
    for tenant, colour in zip(tenants, itertools.cycle(["#0b6e4f", "#8fd3b6", "#3a86ff", "#c84c09"]), strict=False):
        heights = [line["lostGPUHoursByTenant"].get(tenant, 0.0) for line in lines]
        lost.bar(variants, heights, bottom=bottom, label=tenant, color=colour)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    lost.set_yscale("symlog", linthresh=10)
    lost.set(ylabel="GPU-hours lost to evictions", title="Work lost, per tenant")
    lost.legend()
    lost.tick_params(axis="x", rotation=20)
    delay.bar(variants, [line["meanQueueingDelayHours"] for line in lines], color="#6c757d")
    delay.set(ylabel="mean queueing delay (h)", title="Queueing, and distance from fair share (line)")
    delay.tick_params(axis="x", rotation=20)
    fairness = delay.twinx()
    fairness.plot(variants, [line["distanceFromFairShare"] for line in lines], color="#c84c09", marker="o")
    fairness.set(ylabel="distance from fair share", ylim=(0, 1))
    return _save(figure, plt, out / "preemption.png")


def _save(figure: Any, plt: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
