"""Bad input to the CLI: one clear line on stderr, a non-zero exit, never a traceback."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leitstand.devcluster import binaries


def leitstand(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leitstand", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_an_unknown_profile(env: dict[str, str]) -> None:
    result = leitstand("dev-cluster", "up", "--profile", "h100-superpod", env=env)
    assert_one_clear_error(
        result, "unknown profile 'h100-superpod'; choose one of demo, dev, industrial-ai-cloud, soofi"
    )


def test_a_port_in_use(env: dict[str, str], busy_port: int) -> None:
    result = leitstand("dev-cluster", "up", "--port", str(busy_port), env=env)
    assert_one_clear_error(result, f"port {busy_port} on 127.0.0.1 is already in use; choose another with --port")


def test_no_go_toolchain(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": str(tmp_path / "empty-bin")}
    env.pop("KUBEBUILDER_ASSETS", None)
    result = leitstand("dev-cluster", "build", "etcd", env=env)
    assert_one_clear_error(result, "no Go toolchain found on PATH")


def test_a_corrupt_binary_cache(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    directory = binaries.cache_dir()
    directory.mkdir(parents=True)
    (directory / "etcd").write_bytes(b"half a binary")
    (directory / "etcd.sha256").write_text("f" * 64 + "\n")
    env = {**env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = leitstand("dev-cluster", "build", "etcd", env=env)
    assert_one_clear_error(result, "is corrupt (checksum mismatch); run `leitstand dev-cluster build --force etcd`")


def test_a_bad_shared_node_label_for_kueue(env: dict[str, str]) -> None:
    example = str(Path(__file__).resolve().parents[3] / "deploy" / "examples" / "site" / "10-queues.yaml")
    assert_one_clear_error(leitstand("kueue", example, "--shared-node-label", "shared", env=env), "is not KEY=VALUE")


def test_a_file_without_quotas_for_kueue(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("kind: ConfigMap\n")
    assert_one_clear_error(leitstand("kueue", str(empty), env=env), "holds no GPUQuota")


def test_a_cluster_name_that_is_not_a_plain_name(env: dict[str, str]) -> None:
    result = leitstand("dev-cluster", "up", "--name", "../../etc", env=env)
    assert_one_clear_error(result, "'../../etc' is not a valid cluster name")


def test_an_unknown_kind_to_explain(env: dict[str, str]) -> None:
    result = leitstand("explain", "cronjob/nightly", env=env)  # refused before any connection
    assert_one_clear_error(result, "unknown kind 'cronjob' in 'cronjob/nightly': give a TrainingJob's name, or job/")
