"""`leitstand dev-cluster` and `leitstand demo` as a user runs them, in subprocesses."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leitstand.devcluster import binaries


def leitstand(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leitstand", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose state lives in a fresh directory (the binary cache is shared)."""
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}


def test_up_wait_soofi_lists_130_eight_gpu_nodes_and_down_leaves_nothing(
    user_env: dict[str, str], kubectl: Path, tmp_path: Path
) -> None:
    up = leitstand("dev-cluster", "up", "--wait", "--profile", "soofi", "--name", "soofi", env=user_env)
    assert up.returncode == 0, up.stderr
    kubeconfig = up.stdout.strip().splitlines()[-1]
    state = json.loads((tmp_path / "state/leitstand/clusters/soofi/state.json").read_text())
    try:
        status = leitstand("dev-cluster", "status", "--name", "soofi", env=user_env)
        assert status.returncode == 0, status.stderr
        assert status.stdout.strip() == kubeconfig

        columns = '{range .items[*]}{.metadata.name} {.status.allocatable.nvidia\\.com/gpu}{"\\n"}{end}'
        listed = subprocess.run(
            [str(kubectl), "--kubeconfig", kubeconfig, "get", "nodes", "-l", "nvidia.com/gpu.product",
             "-o", f"jsonpath={columns}"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        rows = [line.split() for line in listed.stdout.strip().splitlines()]
        assert len(rows) == 130
        assert {gpus for _name, gpus in rows} == {"8"}
    finally:
        down = leitstand("dev-cluster", "down", "--name", "soofi", env=user_env)
    assert down.returncode == 0, down.stderr
    assert state["pids"].keys() == {"etcd", "kube-apiserver", "kwok"}
    assert not [name for name, pid in state["pids"].items() if alive(pid)]
    assert leitstand("dev-cluster", "status", "--name", "soofi", env=user_env).returncode == 1


def test_a_second_up_with_the_same_name_is_refused_and_two_names_do_not_collide(
    user_env: dict[str, str],
) -> None:
    first = leitstand("dev-cluster", "up", "--wait", "--name", "one", env=user_env)
    assert first.returncode == 0, first.stderr
    try:
        again = leitstand("dev-cluster", "up", "--wait", "--name", "one", env=user_env)
        assert again.returncode == 2
        assert "already running" in again.stderr
        assert "Traceback" not in again.stderr
        second = leitstand("dev-cluster", "up", "--wait", "--name", "two", env=user_env)
        assert second.returncode == 0, second.stderr
        assert leitstand("dev-cluster", "down", "--name", "two", env=user_env).returncode == 0
    finally:
        assert leitstand("dev-cluster", "down", "--name", "one", env=user_env).returncode == 0


def test_make_demo_binds_the_examples_and_ctrl_c_tears_everything_down(user_env: dict[str, str], kubectl: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "leitstand", "demo"],
        env=user_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Leitstand demo is running" in text, text
        kubeconfig = next(part for part in text.split() if part.endswith("/kubeconfig"))
        state = json.loads((Path(kubeconfig).parent / "state.json").read_text())

        columns = '{range .items[*]}{.metadata.namespace}/{.metadata.name}={.status.phase}{"\\n"}{end}'
        deadline = time.monotonic() + 60
        phases: dict[str, str] = {}
        wanted = {"helix-pharma/notebook": "Running", "acme-robotics/vision-finetune-0": "Running"}
        while time.monotonic() < deadline:
            listed = subprocess.run(
                [str(kubectl), "--kubeconfig", kubeconfig, "get", "pods", "-A", "-o", f"jsonpath={columns}"],
                capture_output=True, text=True, check=True, timeout=30,
            ).stdout  # fmt: skip
            phases = dict(line.split("=", 1) for line in listed.split())
            if all(phases.get(pod) == phase for pod, phase in wanted.items()):
                break
            time.sleep(0.5)
        assert {pod: phases.get(pod) for pod in wanted} == wanted, text
        # The binds and the status of a job that cannot be placed are separate writes of one cycle:
        # the status may land a moment after the pods run.
        deadline = time.monotonic() + 30
        waiting = ""
        while time.monotonic() < deadline:
            waiting = subprocess.run(
                [str(kubectl), "--kubeconfig", kubeconfig, "get", "tj", "-n", "soofi", "llm-100b-pretrain",
                 "-o", "jsonpath={.status.phase}/{.status.reason}"],
                capture_output=True, text=True, check=True, timeout=30,
            ).stdout  # fmt: skip
            if waiting == "Queued/NoMatchingNodes":
                break
            time.sleep(0.5)
        assert waiting == "Queued/NoMatchingNodes"  # the dev profile has no SOOFI pool: it says so
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest
    assert "Traceback" not in rest
    assert not [name for name, pid in state["pids"].items() if alive(pid)]
    assert binaries.locate("kubectl") == kubectl
