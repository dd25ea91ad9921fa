"""Trace and node-list loaders: the two real traces, the generic CSV, and clear errors for bad files."""

import math
from pathlib import Path

import pytest

from leitstand.sim import clusters, traces

TRACES = Path(__file__).parents[2] / "data" / "traces"
ALIBABA = TRACES / "alibaba-gpu-v2023"
ITP = TRACES / "microsoft-itp-2021"


def test_the_alibaba_pod_list_is_read_whole() -> None:
    jobs = traces.load([ALIBABA / "openb_pod_list_default.csv"])
    assert len(jobs) == 8152
    assert {job.tenant for job in jobs} == {"openb"}
    assert sum(1 for job in jobs if job.gpus_per_replica) == 7064
    assert sum(job.gpus for job in jobs) == 7433  # shared GPUs (gpu_milli < 1000) count as one whole GPU
    first = next(job for job in jobs if job.name == "openb/openb-pod-0000")
    assert (first.submit, first.duration, first.cpu_millis_per_replica) == (0, 12537496, 12000)
    assert first.memory_bytes_per_replica == 16384 * 2**20
    assert [job.submit for job in jobs] == sorted(job.submit for job in jobs)


def test_the_untimed_alibaba_list_arrives_one_a_second_and_never_ends() -> None:
    jobs = traces.load([ALIBABA / "openb_pod_list_multigpu50.csv"])
    assert len(jobs) == 9061
    assert jobs[1].submit - jobs[0].submit == 1
    assert all(math.isinf(job.duration) for job in jobs)


def test_itp_files_are_one_tenant_each_and_big_jobs_are_gangs_of_nodes() -> None:
    jobs = traces.load([ITP / "cluster03.csv", ITP / "cluster06.csv"])
    assert len(jobs) == 3011 + 2396
    assert {job.tenant for job in jobs} == {"cluster03", "cluster06"}
    big = [job for job in jobs if job.gpus > 8]
    assert big
    assert all(job.gpus_per_replica <= 8 and job.replicas > 1 for job in big)


@pytest.mark.parametrize(("gpus", "shape"), [(1, (1, 1)), (8, (1, 8)), (16, (2, 8)), (12, (2, 6)), (9, (3, 3))])
def test_gang_shapes(gpus: int, shape: tuple[int, int]) -> None:
    assert traces.gang_shape(gpus) == shape


def test_the_generic_csv(tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(
        "submit_seconds,tenant,replicas,gpus_per_replica,duration_seconds,priority\n"
        "10,acme,4,8,3600,train\n0,helix,1,1,60,inference\n"
    )
    jobs = traces.load([path])
    assert [(j.tenant, j.submit, j.replicas, j.gpus_per_replica, j.priority.name) for j in jobs] == [
        ("helix", 0, 1, 1, "INFERENCE"),
        ("acme", 10, 4, 8, "TRAIN"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n", "unknown trace format"),
        ("", "is empty"),
        ("submit_seconds,tenant,replicas,gpus_per_replica,duration_seconds,priority\nsoon,a,1,1,1,train\n",
         ":2: submit_seconds must be a number, not 'soon'"),
        ("submit_seconds,tenant,replicas,gpus_per_replica,duration_seconds,priority\n0,a,0,1,1,train\n",
         ":2: replicas must be at least 1"),
        ("submit_seconds,tenant,replicas,gpus_per_replica,duration_seconds,priority\n0,a,1,9,1,train\n",
         "gpus_per_replica must be 0-8"),
        ("submit_seconds,tenant,replicas,gpus_per_replica,duration_seconds,priority\n0,a,1,1,1,urgent\n",
         "priority must be one of train, build, inference"),
        ("submit_seconds,tenant,replicas,gpus_per_replica,duration_seconds,priority\n0,,1,1,1,train\n",
         "tenant is empty"),
        ("job_id,submission_time,duration,num_gpu\nx,0,-5,1\n", "duration must be at least 0"),
    ],
)  # fmt: skip
def test_bad_traces_name_the_file_line_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(traces.TraceError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        traces.load([path])
    assert str(path) in str(caught.value)


def test_a_missing_trace() -> None:
    with pytest.raises(traces.TraceError, match="cannot read"):
        traces.load([Path("/nonexistent/trace.csv")])


def test_the_alibaba_node_list() -> None:
    nodes = clusters.node_list(ALIBABA / "openb_node_list_gpu_node.csv")
    assert len(nodes) == 1213
    assert sum(node.gpus for node in nodes) == 6212
    assert {node.gpu_type for node in nodes} >= {"g2", "t4", "p100", "v100m32"}
    assert all(node.domains == (node.name,) for node in nodes)


def test_a_bad_node_list(tmp_path: Path) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn1,lots,1,1,T4\n")
    with pytest.raises(traces.TraceError, match=":2: gpu, cpu_milli and memory_mib must be whole numbers"):
        clusters.node_list(path)
    path.write_text("name,gpus\nn1,8\n")
    with pytest.raises(traces.TraceError, match="needs the header sn,cpu_milli,memory_mib,gpu,model"):
        clusters.node_list(path)
