"""Builds and finds the control-plane binaries: etcd, kube-apiserver, kubectl, kwok, helm.

Each binary is built from a small Go module under ``hack/`` with the Go module
proxy as its only source, statically (``CGO_ENABLED=0``) and version-stamped,
into ``$XDG_CACHE_HOME/leitstand/bin/<version>/``. ``<version>`` names the
Kubernetes release and a digest of ``hack/``, so editing a go.mod builds into a
fresh directory and an unchanged tree is never rebuilt. A ``.sha256`` file
written after each successful build lets ``locate`` tell a finished binary from
a truncated or overwritten one.

``KUBEBUILDER_ASSETS`` (the envtest convention) may name a directory whose etcd,
kube-apiserver and kubectl are used instead of building them.
"""

import datetime
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from leitstand import locations
from leitstand.errors import UserError

KUBERNETES_VERSION = "v1.36.5"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
TRAINING_OPERATOR_VERSION = "v1.8.1"
TRAINING_OPERATOR_MODULE = "github.com/kubeflow/training-operator"
PYTORCHJOB_CRD = "manifests/base/crds/kubeflow.org_pytorchjobs.yaml"
JOBSET_VERSION = "v0.12.0"
JOBSET_MODULE = "sigs.k8s.io/jobset"
JOBSET_CRD = "config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml"
JOBSET_WEBHOOKS = "config/components/webhook/manifests.yaml"
KUEUE_VERSION = "v0.17.0"
KUEUE_MODULE = "sigs.k8s.io/kueue"
KUEUE_CRDS = tuple(
    f"config/components/crd/bases/kueue.x-k8s.io_{plural}.yaml"
    for plural in (
        "admissionchecks", "clusterqueues", "cohorts", "localqueues", "multikueueclusters", "multikueueconfigs",
        "provisioningrequestconfigs", "resourceflavors", "topologies", "workloadpriorityclasses", "workloads",
    )
)  # fmt: skip
KUEUE_WEBHOOKS = "config/components/webhook/manifests.yaml"
MINIMUM_GO = (1, 26)

ENVTEST_BINARIES = frozenset({"etcd", "kube-apiserver", "kubectl"})


def _kubernetes_ldflags(build_date: str) -> list[str]:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": build_date,
    }
    return [
        f"-X {package}.{key}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in values.items()
    ]


@dataclass(frozen=True, slots=True)
class Tool:
    """One binary: which hack/ module builds it, from which package, stamped how."""

    name: str
    module: str
    package: str
    version: str
    ldflags: Callable[[str], list[str]]
    files: tuple[tuple[str, str, str], ...] = ()  # (Go module, path in it, name) copied beside the binary


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "etcd",
            "etcd",
            ".",
            ETCD_VERSION,
            lambda _date: [f"-X go.etcd.io/etcd/api/v3/version.GitSHA=release-{ETCD_VERSION}"],
        ),
        Tool(
            "kube-apiserver",
            "kubernetes",
            "./kube-apiserver",
            KUBERNETES_VERSION,
            _kubernetes_ldflags,
        ),
        Tool("kubectl", "kubernetes", "./kubectl", KUBERNETES_VERSION, _kubernetes_ldflags),
        Tool(
            "kube-scheduler",
            "kubernetes",
            "./kube-scheduler",
            KUBERNETES_VERSION,
            _kubernetes_ldflags,
        ),
        Tool(
            "kube-controller-manager",
            "kubernetes",
            "./kube-controller-manager",
            KUBERNETES_VERSION,
            _kubernetes_ldflags,
        ),
        Tool(
            "training-operator",
            "training-operator",
            ".",
            TRAINING_OPERATOR_VERSION,
            lambda _date: [],
            files=((TRAINING_OPERATOR_MODULE, PYTORCHJOB_CRD, Path(PYTORCHJOB_CRD).name),),
        ),
        Tool(
            "jobset",
            "jobset",
            ".",
            JOBSET_VERSION,
            lambda _date: [f"-X sigs.k8s.io/jobset/pkg/version.GitVersion={JOBSET_VERSION}"],
            files=(
                (JOBSET_MODULE, JOBSET_CRD, Path(JOBSET_CRD).name),
                (JOBSET_MODULE, JOBSET_WEBHOOKS, "jobset-webhooks.yaml"),
            ),
        ),
        Tool(
            "kueue",
            "kueue",
            ".",
            KUEUE_VERSION,
            lambda _date: [f"-X sigs.k8s.io/kueue/pkg/version.GitVersion={KUEUE_VERSION}"],
            files=(
                *((KUEUE_MODULE, crd, Path(crd).name) for crd in KUEUE_CRDS),
                (KUEUE_MODULE, KUEUE_WEBHOOKS, "kueue-webhooks.yaml"),
            ),
        ),
        Tool(
            "kwok",
            "kwok",
            ".",
            KWOK_VERSION,
            lambda _date: [f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.lstrip('v')}"],
        ),
        Tool(
            "helm",
            "helm",
            "helm.sh/helm/v3/cmd/helm",
            HELM_VERSION,
            lambda _date: [
                f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
                "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            ],
        ),
    )
}

# What `dev-cluster build` and `make binaries` build: the control plane and every controller a test starts
# (`dev-cluster up --controllers kube,training-operator,jobset,kube-scheduler,kueue`).
DEFAULT_SET = (
    "etcd", "kube-apiserver", "kubectl", "kwok", "helm", "kube-controller-manager", "training-operator", "jobset",
    "kube-scheduler", "kueue",
)  # fmt: skip
CONTROLLERS = {
    "kube": "kube-controller-manager",
    "training-operator": "training-operator",
    "jobset": "jobset",
    "kube-scheduler": "kube-scheduler",
    "kueue": "kueue",
}


def hack_dir() -> Path:
    """The ``hack/`` directory of the source checkout; a UserError outside one."""
    root = locations.source_root()
    if root is None:
        raise UserError(
            "the control-plane binaries are built from hack/ in a source checkout; "
            "clone the repository or set KUBEBUILDER_ASSETS to a directory with "
            "etcd, kube-apiserver and kubectl"
        )
    return root / "hack"


def cache_version() -> str:
    """``<kubernetes version>-<digest of hack/>``: the cache directory's name."""
    digest = hashlib.sha256()
    hack = hack_dir()
    for path in sorted(hack.rglob("*")):
        if path.is_file() and (path.suffix == ".go" or path.name in {"go.mod", "go.sum"}):
            digest.update(str(path.relative_to(hack)).encode())
            digest.update(path.read_bytes())
    return f"{KUBERNETES_VERSION}-{digest.hexdigest()[:10]}"


def cache_dir() -> Path:
    """Where built binaries live: ``$XDG_CACHE_HOME/leitstand/bin/<version>/``."""
    return locations.cache_home() / "bin" / cache_version()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _envtest_path(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets or name not in ENVTEST_BINARIES:
        return None
    path = Path(assets) / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise UserError(
            f"KUBEBUILDER_ASSETS={assets} has no executable {name}; "
            "point it at a directory with etcd, kube-apiserver and kubectl, or unset it"
        )
    return path


def missing(names: Iterable[str]) -> list[str]:
    """The binaries of ``names`` that must be built before they can be used."""
    result = []
    for name in names:
        if _envtest_path(name) is not None:
            continue
        path = cache_dir() / name
        if not (path.is_file() and path.with_suffix(".sha256").is_file()):
            result.append(name)
    return result


def locate(name: str) -> Path:
    """The path of a built, intact binary ``name``.

    Raises UserError when it was never built or when the cached file no longer
    matches the checksum written when it was built.
    """
    envtest = _envtest_path(name)
    if envtest is not None:
        return envtest
    path = cache_dir() / name
    checksum = path.with_suffix(".sha256")
    if not (path.is_file() and checksum.is_file()):
        raise UserError(f"{name} is not built yet; run `make binaries` (or `leitstand dev-cluster build`)")
    if _sha256(path) != checksum.read_text().strip():
        raise UserError(
            f"the cached {name} at {path} is corrupt (checksum mismatch); "
            f"run `leitstand dev-cluster build --force {name}` to rebuild it"
        )
    return path


def go_toolchain() -> str:
    """The path of a ``go`` command new enough for hack/; a UserError otherwise."""
    go = shutil.which("go")
    if go is None:
        raise UserError(
            "no Go toolchain found on PATH; install Go "
            f"{MINIMUM_GO[0]}.{MINIMUM_GO[1]} or newer to build the control plane, "
            "or set KUBEBUILDER_ASSETS to prebuilt etcd, kube-apiserver and kubectl"
        )
    try:
        output = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        raise UserError(f"`{go} env GOVERSION` failed ({error}); is the Go installation broken?") from None
    found = re.match(r"go(\d+)\.(\d+)", output)
    if found is None or (int(found[1]), int(found[2])) < MINIMUM_GO:
        raise UserError(
            f"{go} is {output or 'of unknown version'}; hack/ needs Go {MINIMUM_GO[0]}.{MINIMUM_GO[1]} or newer"
        )
    return go


def build(name: str, *, log: Path) -> Path:
    """Builds ``name`` into the cache and returns its path; idempotent per cache version.

    The binary is written under a temporary name and renamed into place only
    after ``go build`` succeeded, with its checksum beside it, so an interrupted
    build never leaves a binary that ``locate`` would accept. Compiler output
    goes to ``log``; a failure raises UserError naming it.
    """
    tool = TOOLS[name]
    go = go_toolchain()
    target_dir = cache_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / name
    partial = target_dir / f".{name}.partial"
    build_date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ldflags = " ".join(["-s", "-w", *tool.ldflags(build_date)])
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as stream:
        stream.write(f"# go build {tool.package} in hack/{tool.module}\n")
        stream.flush()
        result = subprocess.run(
            [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), tool.package],
            cwd=hack_dir() / tool.module,
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"building {name} failed: {tail[0]} (full log: {log})")
    for module, inside, name in tool.files:
        shutil.copyfile(_module_dir(go, tool, module, env) / inside, target_dir / name)
    target.with_suffix(".sha256").unlink(missing_ok=True)
    partial.replace(target)
    target.with_suffix(".sha256").write_text(_sha256(target) + "\n")
    return target


def _module_dir(go: str, tool: Tool, module: str, env: dict[str, str]) -> Path:
    """Where the module cache holds ``module`` at the version ``tool``'s hack/ module requires."""
    result = subprocess.run(
        [go, "list", "-m", "-f", "{{.Dir}}", module],
        cwd=hack_dir() / tool.module,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise UserError(f"`go list -m {module}` in hack/{tool.module} failed: {result.stderr.strip()}")
    return Path(result.stdout.strip())


def shipped(name: str) -> Path:
    """A file a build copied from a module beside its binary (a CRD of the training-operator, say)."""
    path = cache_dir() / name
    if not path.is_file():
        raise UserError(f"{name} is missing from {cache_dir()}; run `make binaries` (or `leitstand dev-cluster build`)")
    return path
