"""`leitstand dev-cluster` and `leitstand demo` as a user runs them, in subprocesses."""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

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


def run_demo(*args: str, env: dict[str, str], within: float) -> tuple[subprocess.Popen[str], list[str]]:
    """``leitstand demo ARGS`` in the background, and its output up to "Press Ctrl-C" (read within ``within`` s)."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "leitstand", "demo", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        output.append(line)
        if "Press Ctrl-C" in line:
            break
    return demo, output


def stop_demo(demo: subprocess.Popen[str]) -> str:
    """Ctrl-C, and what the demo printed after it; it must exit cleanly."""
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest
    assert "Traceback" not in rest
    return rest


def get(kubectl: Path, kubeconfig: str, *args: str, token: str | None = None) -> Any:
    auth = ["--token", token] if token else []
    listed = subprocess.run(
        [str(kubectl), "--kubeconfig", kubeconfig, *auth, "get", *args, "-o", "json"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return json.loads(listed)


def test_make_demo_plays_the_scenario_prints_a_map_url_that_opens_and_ctrl_c_tears_everything_down(
    user_env: dict[str, str], kubectl: Path, tmp_path: Path
) -> None:
    demo, output = run_demo("--exit-after", "600", env=user_env, within=360)
    try:
        text = "".join(output)
        assert "Leitstand demo is running" in text, text
        kubeconfig = text.split("export KUBECONFIG=", 1)[1].split("`", 1)[0]
        state = json.loads((Path(kubeconfig).parent / "state.json").read_text())
        steps = [line.strip() for line in output if line.startswith("[")]
        assert [step[:5] for step in steps] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"], text

        # 1: SOOFI's gang runs whole on its reserved block
        soofi = get(kubectl, kubeconfig, "tj", "-n", "soofi", "llm-100b-pretrain")
        assert soofi["status"]["phase"] == "Running"
        pods = get(kubectl, kubeconfig, "pods", "-n", "soofi")["items"]
        assert len(pods) == 128
        assert all(p["spec"]["nodeName"].startswith("soofi-") for p in pods)
        # 2: both companies beyond their guarantees, as the step read them from the GPUQuotas' status (step 3
        # has changed them since); acme-robotics's jobs are protected by its minRuntimeSeconds, so its number holds
        found = re.findall(r"([a-z-]+) holds (\d+) GPUs, guaranteed (\d+)", text)
        held = {queue: (int(allocated), int(guaranteed)) for queue, allocated, guaranteed in found}
        assert set(held) == {"acme-robotics", "nordwind-energy"}, text
        assert all(allocated > guaranteed for allocated, guaranteed in held.values()), held
        quotas = {q["metadata"]["name"]: q["status"]["gpus"] for q in get(kubectl, kubeconfig, "gq")["items"]}
        assert quotas["acme-robotics"]["b200"]["allocated"] == held["acme-robotics"][0]
        # 3: helix-pharma's jobs run; the victims it reclaimed from are named, and queued again (or running again)
        helix = {
            j["metadata"]["name"]: j["status"] for j in get(kubectl, kubeconfig, "tj", "-n", "helix-pharma")["items"]
        }
        assert all(helix[f"assay-{i}"]["phase"] == "Running" for i in range(1, 5)), helix
        events = get(kubectl, kubeconfig, "events", "-A", "--field-selector", "reason=Preempting")["items"]
        victims = {f"{e['involvedObject']['namespace']}/{e['involvedObject']['name']}" for e in events
                   if e["involvedObject"]["kind"] == "TrainingJob"}  # fmt: skip
        assert victims, events
        reclaimed = next(line for line in output if "reclaimed from" in line)
        assert all(victim in reclaimed for victim in victims), (victims, reclaimed)
        # 4: the job that can never fit says so
        assert helix["protein-fold-xl"]["phase"] == "Queued"
        assert helix["protein-fold-xl"]["reason"] == "Unschedulable", helix["protein-fold-xl"]
        # 5: the job with a runtime limit ended at it
        limited = get(kubectl, kubeconfig, "tj", "-n", "acme-robotics", "eval-sweep")["status"]
        assert (limited["phase"], limited["reason"]) == ("Failed", "RuntimeLimitExceeded")

        # the map's URL opens with the read-only token it carries, which may read and nothing else
        url = next(part for part in text.split() if "/ui#token=" in part)
        base, token = url.split("/ui#token=")
        with httpx.Client(base_url=base, timeout=30) as http:
            assert "cluster map" in http.get("/ui").text
            cluster = http.get("/api/v1/cluster", headers={"Authorization": f"Bearer {token}"})
            assert cluster.status_code == 200, cluster.text
            assert len(cluster.json()["nodes"]) == 166
            jobs = http.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}).json()
            assert {"helix-pharma/protein-fold-xl", "soofi/llm-100b-pretrain"} <= {
                f"{j['namespace']}/{j['name']}" for j in jobs
            }
        server = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
        authority = tmp_path / "ca.crt"
        authority.write_bytes(base64.b64decode(server["certificate-authority-data"]))
        may = subprocess.run(
            [str(kubectl), "--kubeconfig", "/dev/null", "--server", server["server"],
             "--certificate-authority", str(authority), "--token", token, "auth", "can-i", "--list"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        granted = [line.split()[0] for line in may.splitlines()[1:] if "leitstand.dev" in line.split()[0]]
        assert sorted(granted) == ["gpuquotas.leitstand.dev", "trainingjobs.leitstand.dev"], may
        assert all("[get list]" in line for line in may.splitlines() if "leitstand.dev" in line.split()[0]), may
        assert " top --kubeconfig " in text
    finally:
        stop_demo(demo)
    assert not [name for name, pid in state["pids"].items() if alive(pid)]
    assert binaries.locate("kubectl") == kubectl

    # --no-scenario starts the same demo again (nothing of the last one, its etcd data included, is in the way)
    again, output = run_demo("--no-scenario", "--exit-after", "600", env=user_env, within=180)
    try:
        text = "".join(output)
        assert "Leitstand demo is running" in text, text
        assert "[1/5]" not in text
        jobs = get(kubectl, kubeconfig, "tj", "-A")["items"]
        assert sorted(j["metadata"]["name"] for j in jobs) == ["llm-100b-pretrain", "vision-finetune"]
    finally:
        stop_demo(again)
