"""``leitstand simulate`` end to end on a small trace, and its one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.cli.test_errors import assert_one_clear_error

HEADER = "submit_seconds,tenant,replicas,gpus_per_replica,duration_seconds,priority\n"
QUOTAS = """\
apiVersion: leitstand.dev/v1alpha1
kind: GPUQuota
metadata: {name: root}
spec: {gpus: {b200: {guaranteed: 64}}}
---
apiVersion: leitstand.dev/v1alpha1
kind: GPUQuota
metadata: {name: acme}
spec: {parent: root, namespaces: [acme], gpus: {b200: {guaranteed: 32}}}
---
apiVersion: leitstand.dev/v1alpha1
kind: GPUQuota
metadata: {name: helix}
spec: {parent: root, namespaces: [helix], gpus: {b200: {guaranteed: 32}}}
"""


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leitstand", "simulate", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    rows = [f"{i * 60},acme,2,8,3600,train\n" for i in range(6)] + [
        f"{600 + i},helix,1,8,1800,train\n" for i in range(6)
    ]
    path.write_text(HEADER + "".join(rows) + "0,acme,20,8,60,train\n")  # the last never fits the dev cluster
    return path


def test_a_report_and_plots_for_every_scheduler(tmp_path: Path, trace: Path) -> None:
    quotas = tmp_path / "quotas.yaml"
    quotas.write_text(QUOTAS)
    out = tmp_path / "out"
    result = simulate("--cluster", "dev", "--trace", str(trace), "--quotas", str(quotas), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "dropped 1 job(s) that could never fit on profile dev" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert [s["scheduler"] for s in report["schedulers"]] == [
        "leitstand",
        "leitstand-hold",
        "kube-scheduler-like",
        "fifo-gang",
        "best-fit",
    ]
    assert report["setup"]["jobs"] == 12
    for summary in report["schedulers"]:
        assert summary["jobs"]["finished"] == 12, summary["scheduler"]
    ours = report["schedulers"][0]
    assert set(ours["tenants"]) == {"acme", "helix"}
    assert ours["evictions"] >= 1  # helix reclaims its guarantee from acme
    assert set(report["leitstandVersus"]) == {"leitstand-hold", "kube-scheduler-like", "fifo-gang", "best-fit"}
    assert report["setup"]["runtimeLimitFactor"] == 2
    assert (report["setup"]["checkpointIntervalSeconds"], report["setup"]["graceSeconds"]) == (None, 30)
    assert set(ours["lostGPUHoursByTenant"]) == {"acme", "helix"}
    assert ours["rememberedDistanceFromFairShare"] is not None
    assert {"backfilledJobs", "estimateErrorAtSubmission", "largestJobs"} <= set(ours["heroJobs"])
    for name in ("allocation.png", "queueing.png", "fragmentation.png", "fairshare.png", "reservations.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name


def test_the_reservation_settings_reach_the_scheduler(tmp_path: Path) -> None:
    """``--reservations`` and ``--starvation-seconds`` are the operator's settings, tried on a trace: with none
    allowed, no gang is reserved where the defaults reserve one."""
    trace = tmp_path / "trace.csv"
    busy = [f"{i},acme,1,8,{3600 * (i + 1)},train\n" for i in range(10)]  # every node of dev, freeing hourly
    trace.write_text(HEADER + "".join(busy) + "60,acme,4,8,600,train\n")  # a gang that waits for four nodes
    reserved = {}
    for name, args in {"default": [], "none": ["--reservations", "0", "--starvation-seconds", "60"]}.items():
        out = tmp_path / name
        result = simulate(
            "--cluster", "dev", "--trace", str(trace), "--scheduler", "leitstand", "--out", str(out), *args
        )
        assert result.returncode == 0, result.stderr
        report = json.loads((out / "report.json").read_text())
        reserved[name] = (report["schedulers"][0]["heroJobs"]["reservedJobs"], report["setup"]["reservations"],
                          report["setup"]["starvationSeconds"])  # fmt: skip
    assert reserved["default"][0] > 0
    assert reserved["default"][1:] == (4, 900)
    assert reserved["none"] == (0, 0, 60)


@pytest.mark.parametrize(
    ("quotas", "message"),
    [
        (QUOTAS.replace("[helix]", "[other]"), "no leaf GPUQuota claims the trace's tenant helix"),
        (QUOTAS.replace("guaranteed: 32}}}", "guaranteed: -1}}}"), "GPUQuota acme: spec.gpus.b200.guaranteed"),
        ("kind: ConfigMap\n", "holds no GPUQuota"),
        ("{{{", "is not valid YAML"),
    ],
)
def test_bad_quotas(tmp_path: Path, trace: Path, quotas: str, message: str) -> None:
    path = tmp_path / "quotas.yaml"
    path.write_text(quotas)
    result = simulate("--cluster", "dev", "--trace", str(trace), "--quotas", str(path), "--out", str(tmp_path / "o"))
    assert_one_clear_error(result, message)
    assert not (tmp_path / "o").exists()  # nothing written for a mistake


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "nowhere"], "nowhere"),
        (["--cluster", "/nonexistent/nodes.csv"], "cannot read /nonexistent/nodes.csv"),
        (["--cluster", "dev", "--scheduler", "slurm"], "unknown scheduler 'slurm'"),
        (["--cluster", "dev", "--checkpoint-interval", "-60"], "--checkpoint-interval must be 0 or more seconds"),
        (["--cluster", "dev", "--reservations", "65"], "--reservations must be between 0 and 64"),
        (["--cluster", "dev", "--starvation-seconds", "-1"], "--starvation-seconds must be 0 or more seconds"),
    ],
)
def test_bad_arguments(tmp_path: Path, trace: Path, args: list[str], message: str) -> None:
    result = simulate(*args, "--trace", str(trace), "--out", str(tmp_path / "o"))
    assert_one_clear_error(result, message)
