"""Job traces for the simulator: the Alibaba GPU v2023 pods, Microsoft ITP 2021, a generic CSV.

Every loader returns ``TraceJob`` rows sorted by submission. The format is found
from the CSV header, so ``load`` takes any of them. Problems with a file raise
``TraceError`` with the file, the line and what is wrong.
"""

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from leitstand.core.model import GPUType, Priority

LIMIT_COLUMN = "runtime_limit_seconds"  # optional, last, in the generic header; empty: no limit of its own
GENERIC_HEADER = ("submit_seconds", "tenant", "replicas", "gpus_per_replica", "duration_seconds", "priority")
ALIBABA_COLUMNS = frozenset({"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"})
ITP_COLUMNS = frozenset({"job_id", "submission_time", "duration", "num_gpu"})
PRIORITIES = {"train": Priority.TRAIN, "build": Priority.BUILD, "inference": Priority.INFERENCE}
MIB = 2**20
GPUS_PER_NODE = 8


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a trace: a gang of ``replicas`` pods that runs ``duration`` seconds once started (an elastic
    job: ``replicas`` x ``duration`` replica-seconds of work, on ``min_replicas`` to ``replicas`` pods)."""

    name: str
    tenant: str
    submit: float
    replicas: int
    gpus_per_replica: int
    duration: float
    priority: Priority = Priority.TRAIN
    cpu_millis_per_replica: int = 0
    memory_bytes_per_replica: int = 0
    gpu_type: GPUType | None = None
    runtime_limit: float | None = None  # seconds, as the user asked (the trace's own column)
    required_level: str | None = None  # a topology level all its pods must share (scenarios; no trace has it)
    movable: bool = False  # it saves on SIGTERM: a move loses nothing (scenarios; leitstand.dev/movable)
    min_replicas: int | None = None  # elastic (when 0 < min_replicas < replicas): a gang of this many that grows

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def elastic(self) -> bool:
        """Does the job run on as few as ``min_replicas`` replicas, growing up to ``replicas``?"""
        return self.min_replicas is not None and 0 < self.min_replicas < self.replicas


def gang_shape(gpus: int) -> tuple[int, int]:
    """(replicas, GPUs per replica) for a job of ``gpus`` GPUs on 8-GPU nodes.

    Up to 8 GPUs is one pod; more is the fewest pods of equal size that divide it
    (16 is 2 x 8, 12 is 2 x 6, 9 is 3 x 3), as a multi-node launcher would spread it.
    """
    if gpus <= GPUS_PER_NODE:
        return 1, gpus
    for per_pod in range(GPUS_PER_NODE, 0, -1):
        if gpus % per_pod == 0:
            return gpus // per_pod, per_pod
    raise AssertionError("unreachable: 1 divides every count")


def load(paths: Sequence[Path]) -> list[TraceJob]:
    """Every job of ``paths`` (each file's format found from its header), sorted by submission."""
    jobs: list[TraceJob] = []
    for path in paths:
        header, rows = _read(path)
        if tuple(header) in (GENERIC_HEADER, (*GENERIC_HEADER, LIMIT_COLUMN)):
            jobs.extend(_generic(path, rows))
        elif set(header) >= ALIBABA_COLUMNS:
            jobs.extend(_alibaba(path, rows, set(header)))
        elif set(header) >= ITP_COLUMNS:
            jobs.extend(_itp(path, rows))
        else:
            raise TraceError(
                f"{path}: unknown trace format (header {','.join(header)}); expected the generic header "
                f"{','.join(GENERIC_HEADER)}, an Alibaba v2023 pod list or a Microsoft ITP cluster file"
            )
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise TraceError("two trace files share job names; give each file once")
    return sorted(jobs, key=lambda job: (job.submit, job.name))


def _read(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        with path.open(newline="") as stream:
            reader = csv.DictReader(stream)
            header = [name.strip() for name in reader.fieldnames or []]
            rows = [(reader.line_num, row) for row in reader]
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise TraceError(f"{path} is not a CSV file: {error}") from None
    if not header:
        raise TraceError(f"{path} is empty; a trace needs a header line and one job per line")
    return header, rows


def _number(path: Path, line: int, row: dict[str, str], column: str, *, minimum: float = 0) -> float:
    text = (row.get(column) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{path}:{line}: {column} must be a number, not {text!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise TraceError(f"{path}:{line}: {column} must be at least {minimum:g}, not {text}")
    return value


def _integer(path: Path, line: int, row: dict[str, str], column: str, *, minimum: int = 0) -> int:
    value = _number(path, line, row, column, minimum=minimum)
    if value != int(value):
        raise TraceError(f"{path}:{line}: {column} must be a whole number, not {row[column].strip()}")
    return int(value)


def _generic(path: Path, rows: Iterable[tuple[int, dict[str, str]]]) -> Iterable[TraceJob]:
    for line, row in rows:
        priority = row["priority"].strip().lower() or "train"
        if priority not in PRIORITIES:
            raise TraceError(f"{path}:{line}: priority must be one of train, build, inference, not {priority!r}")
        tenant = row["tenant"].strip()
        if not tenant:
            raise TraceError(f"{path}:{line}: tenant is empty; name the tenant (a namespace) that submits the job")
        gpus = _integer(path, line, row, "gpus_per_replica")
        if gpus > GPUS_PER_NODE:
            raise TraceError(f"{path}:{line}: gpus_per_replica must be 0-8 (one node), not {gpus}")
        yield TraceJob(
            name=f"{tenant}/{path.stem}-{line}",
            tenant=tenant,
            submit=_number(path, line, row, "submit_seconds"),
            replicas=_integer(path, line, row, "replicas", minimum=1),
            gpus_per_replica=gpus,
            duration=_number(path, line, row, "duration_seconds"),
            priority=PRIORITIES[priority],
            runtime_limit=_number(path, line, row, LIMIT_COLUMN, minimum=1)
            if (row.get(LIMIT_COLUMN) or "").strip()
            else None,
        )


def _alibaba(path: Path, rows: Iterable[tuple[int, dict[str, str]]], header: set[str]) -> Iterable[TraceJob]:
    timed = "creation_time" in header
    for line, row in rows:
        gpus = _integer(path, line, row, "num_gpu")
        if gpus > GPUS_PER_NODE:
            raise TraceError(f"{path}:{line}: num_gpu must be 0-8, not {gpus}")
        if timed:
            submit = _number(path, line, row, "creation_time")
            started = _number(path, line, row, "scheduled_time") if row["scheduled_time"].strip() else submit
            duration = max(0.0, _number(path, line, row, "deletion_time") - started)
        else:
            submit, duration = float(line - 1), math.inf  # no times: one arrival a second, never finishing
        spec = (row.get("gpu_spec") or "").strip()
        yield TraceJob(
            name=f"openb/{row['name'].strip()}",
            tenant="openb",
            submit=submit,
            replicas=1,
            gpus_per_replica=gpus,
            duration=duration,
            cpu_millis_per_replica=_integer(path, line, row, "cpu_milli"),
            memory_bytes_per_replica=_integer(path, line, row, "memory_mib") * MIB,
            # one allowed model pins the type; a list of models ("V100M16|V100M32") cannot be said in one
            # gpuType, so such a pod may use any type
            gpu_type=GPUType(spec.lower()) if spec and "|" not in spec else None,
        )


def _itp(path: Path, rows: Iterable[tuple[int, dict[str, str]]]) -> Iterable[TraceJob]:
    tenant = path.stem.lower().replace("_", "-")  # one tenant per cluster file
    for line, row in rows:
        replicas, per_replica = gang_shape(_integer(path, line, row, "num_gpu", minimum=1))
        yield TraceJob(
            name=f"{tenant}/{row['job_id'].strip() or line}",
            tenant=tenant,
            submit=_number(path, line, row, "submission_time"),
            replicas=replicas,
            gpus_per_replica=per_replica,
            duration=_number(path, line, row, "duration"),
        )
