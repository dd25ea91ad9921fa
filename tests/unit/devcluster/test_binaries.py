"""The binary cache: versions agree with hack/, and a broken cache is named, not trusted."""

import re
from pathlib import Path

import pytest

from leitstand import locations
from leitstand.devcluster import binaries
from leitstand.errors import UserError

HACK = Path(locations.PACKAGE_DIR).parent.parent / "hack"


@pytest.mark.parametrize(
    ("module", "requirement", "version"),
    [
        ("kubernetes", "k8s.io/kubernetes", binaries.KUBERNETES_VERSION),
        ("etcd", "go.etcd.io/etcd/server/v3", binaries.ETCD_VERSION),
        ("kwok", "sigs.k8s.io/kwok", binaries.KWOK_VERSION),
        ("helm", "helm.sh/helm/v3", binaries.HELM_VERSION),
    ],
)
def test_the_stamped_version_is_the_one_hack_builds(module: str, requirement: str, version: str) -> None:
    go_mod = (HACK / module / "go.mod").read_text()
    assert re.search(rf"^\s*(require\s+)?{re.escape(requirement)} {re.escape(version)}\b", go_mod, re.MULTILINE)


def test_every_staging_module_is_pinned_to_the_matching_release() -> None:
    go_mod = (HACK / "kubernetes" / "go.mod").read_text()
    staging = re.findall(r"^\s*(k8s\.io/\S+) => (\S+) (\S+)$", go_mod, re.MULTILINE)
    minor = binaries.KUBERNETES_VERSION.replace("v1.", "v0.")
    assert len(staging) >= 30
    assert {(name == target, version) for name, target, version in staging} == {(True, minor)}


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    return tmp_path


def test_a_binary_never_built_is_missing_and_locate_says_how_to_build_it(empty_cache: Path) -> None:
    assert binaries.missing(["etcd"]) == ["etcd"]
    with pytest.raises(UserError, match="etcd is not built yet; run `make binaries`"):
        binaries.locate("etcd")


def test_a_cached_binary_that_no_longer_matches_its_checksum_is_reported_corrupt(
    empty_cache: Path,
) -> None:
    directory = binaries.cache_dir()
    directory.mkdir(parents=True)
    (directory / "etcd").write_bytes(b"\x7fELF truncated")
    (directory / "etcd.sha256").write_text("0" * 64 + "\n")
    assert binaries.missing(["etcd"]) == []
    with pytest.raises(UserError, match=r"the cached etcd at .* is corrupt .* --force etcd"):
        binaries.locate("etcd")


def test_kubebuilder_assets_replace_the_envtest_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("etcd", "kube-apiserver", "kubectl"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    assert binaries.locate("kube-apiserver") == tmp_path / "kube-apiserver"
    assert binaries.missing(["etcd", "kube-apiserver", "kubectl"]) == []


def test_kubebuilder_assets_without_the_binary_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(UserError, match=f"KUBEBUILDER_ASSETS={tmp_path} has no executable etcd"):
        binaries.locate("etcd")


def test_no_go_toolchain_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match=r"no Go toolchain found on PATH; install Go 1\.26 or newer"):
        binaries.go_toolchain()
