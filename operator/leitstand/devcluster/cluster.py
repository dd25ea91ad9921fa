"""Starts and stops a local control plane: etcd, kube-apiserver (RBAC on) and kwok.

``LocalCluster.start`` brings the processes up in order, waits for each to be
ready (every wait bounded), writes an admin kubeconfig, installs the CRDs and
creates the profile's nodes. If any step fails, everything already started is
stopped before the error propagates: a failed start leaves no process behind.

Processes run in their own session (so a terminal's Ctrl-C reaches only us,
and we tear down in order). When the cluster is attached to its creator (tests,
``make demo``, ``dev-cluster up`` without ``--wait``) each child also gets
``PR_SET_PDEATHSIG``, so even a SIGKILLed creator leaves no orphans. A detached
cluster (``dev-cluster up --wait``) records its PIDs in ``state.json`` for
``dev-cluster down``, which checks each PID's command line before signalling it.

etcd runs with ``--unsafe-no-fsync``: the data is thrown away with the cluster.
"""

import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import datetime
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leitstand import locations
from leitstand.devcluster import binaries, pki, profiles
from leitstand.errors import UserError
from leitstand.kube import connection
from leitstand.kube.client import ApiError, Client

Progress = Callable[[str], None]
STATE_FILE = "state.json"
ADMIN_USER = "leitstand-admin"
LOOPBACK = "127.0.0.1"

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the parent is gone: no graceful shutdown to wait for


KUEUE_HOOKS = re.compile(r"/(mutate|validate)-(kueue-x-k8s-io-v1beta2-[a-z]+|batch-v1-job)$")


def kueue_serves(path: str) -> bool:
    """True for the hooks of Kueue's webhook manifests its manager here serves: its own kinds and batch/v1 Jobs."""
    return KUEUE_HOOKS.search(path) is not None


def _insecure() -> ssl.SSLContext:
    """A context that accepts a component's self-signed serving certificate; only its /healthz is read."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _probe(url: str, context: ssl.SSLContext | None = None) -> str:
    """The body of a health endpoint (etcd, kube-apiserver, kwok); OSError while nothing answers."""
    with urllib.request.urlopen(url, timeout=5, context=context) as answer:  # noqa: S310 - our own loopback URLs
        body: bytes = answer.read()
    return body.decode().strip()


def _run(work: Coroutine[Any, Any, None]) -> None:
    """Runs the launcher's API calls (the package's one API client is async) from this synchronous code,
    in a thread of its own when the caller already runs an event loop (the benchmarks start clusters there)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(work)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, work).result()


async def _create(api: Client, path: str, body: dict[str, Any]) -> None:
    """Creates ``body``; one that exists already is fine, any other refusal is the launcher's error."""
    try:
        await api.ensure(path, body)
    except ApiError as error:
        raise UserError(f"creating {body['metadata']['name']} failed: {error}") from None


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def ensure_port_free(port: int, flag: str) -> None:
    """Raises UserError when ``port`` on 127.0.0.1 cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {LOOPBACK} is already in use; choose another with {flag} "
                    "or leave it out to pick a free port"
                ) from None
            raise UserError(f"cannot use port {port} on {LOOPBACK}: {error.strerror}") from None


@dataclass
class State:
    """What ``status`` and ``down`` need to find a running cluster again."""

    name: str
    directory: str
    profile: str
    kubeconfig: str
    server: str
    etcd: str
    nodes: int
    gpus: int
    started: str
    detached: bool
    pids: dict[str, int] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Binding:
    """One audited request: what (``pods/binding`` or ``leases``), on which object, who asked, the answer, when."""

    resource: str
    pod: str
    user_agent: str
    code: int
    at: datetime.datetime


CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def default_directory(name: str) -> Path:
    if not CLUSTER_NAME.fullmatch(name):
        raise UserError(
            f"{name!r} is not a valid cluster name: use up to 63 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return locations.state_home() / "clusters" / name


def _clear(directory: Path) -> None:
    """Removes what a stopped cluster left in ``directory`` (its logs, and its etcd data, which a new cluster
    must not inherit: its CRDs and objects would be there already)."""
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise UserError(f"cannot clear {directory} of the last cluster of this name: {error}") from None


def _hold(directory: Path) -> int:
    """An exclusive lock on ``directory``'s cluster for this process's life (or until ``release``), so that
    two starts of one name cannot share (or clear) one directory; a second start is refused."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(directory.with_name(directory.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise UserError(
            f"another process is starting or running the dev cluster in {directory}; wait for it, or stop it first"
        ) from None
    return lock


def read_state(directory: Path) -> State | None:
    """The state of the cluster in ``directory``, or None when there is none."""
    path = directory / STATE_FILE
    try:
        return State(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        raise UserError(f"{path} is corrupt; remove {directory} and start again") from None


def _process_alive(pid: int, command: str) -> bool:
    """True when ``pid`` is running ``command`` (guards against PID reuse)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
        status = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    zombie = status.rsplit(")", 1)[-1].split()[0] == "Z"
    return argv0 == command and not zombie


def running_components(state: State) -> dict[str, bool]:
    """Each component of ``state`` mapped to whether its process is still alive."""
    return {name: _process_alive(pid, state.commands[name]) for name, pid in state.pids.items()}


def _terminate(pids: Sequence[tuple[str, int, str]], *, children: dict[int, subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group, wait up to 10 s, then SIGKILL what is left."""
    for _name, pid, command in pids:
        if _process_alive(pid, command):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for _name, pid, command in pids:
        while time.monotonic() < deadline:
            child = children.get(pid)
            if child is not None and child.poll() is not None:
                break
            if child is None and not _process_alive(pid, command):
                break
            time.sleep(0.05)
        else:
            if _process_alive(pid, command):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        child = children.get(pid)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)


class LocalCluster:
    """One local control plane in one directory; start() once, stop() always."""

    def __init__(
        self,
        name: str,
        profile: profiles.Profile,
        *,
        directory: Path | None = None,
        api_port: int | None = None,
        apiserver_args: Sequence[str] = (),
        detached: bool = False,
        install_crds: bool = True,
        controllers: Sequence[str] = (),
        progress: Progress = lambda _message: None,
    ) -> None:
        self.name = name
        self.profile = profile
        self.directory = directory or default_directory(name)
        self.api_port = api_port
        self.apiserver_args = list(apiserver_args)
        self.detached = detached
        self.install_crds = install_crds
        unknown = sorted(set(controllers) - set(binaries.CONTROLLERS))
        if unknown:
            raise UserError(f"unknown controller {unknown[0]!r}; choose from {', '.join(binaries.CONTROLLERS)}")
        self.controllers = tuple(controllers)
        self.progress = progress
        self.kubeconfig = self.directory / "kubeconfig"
        self.audit_log = self.directory / "logs" / "audit.log"
        self.server = ""
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, list[str]] = {}
        self._ready: dict[str, Callable[[], bool]] = {}
        self._order: list[tuple[str, int, str]] = []
        self._lock: int | None = None  # held from start to stop (``_hold``)
        self._etcd_url = ""
        self._authority: pki.Authority | None = None
        self._admin: pki.KeyPair | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, *, wait_timeout: float = 120.0) -> None:
        """Brings the whole cluster up; on any failure stops what started and re-raises."""
        existing = read_state(self.directory)
        if existing is not None and any(running_components(existing).values()):
            raise UserError(
                f"dev cluster {self.name!r} is already running (kubeconfig {existing.kubeconfig}); "
                f"run `leitstand dev-cluster down --name {self.name}` first"
            )
        if self._lock is None:
            self._lock = _hold(self.directory)
        _clear(self.directory)
        if self.api_port is not None:
            ensure_port_free(self.api_port, "--port")
        tools = ("etcd", "kube-apiserver", "kwok", *(binaries.CONTROLLERS[c] for c in self.controllers))
        paths = {tool: binaries.locate(tool) for tool in tools}
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        (self.directory / "logs").mkdir(exist_ok=True)
        try:
            self._make_pki()
            self._start_etcd(paths["etcd"])
            self._start_apiserver(paths["kube-apiserver"], wait_timeout)
            if self.install_crds:
                self._install_crds()
            self._create_namespace("leitstand-system")
            self._start_kwok(paths["kwok"])
            self._create_nodes(wait_timeout)
            if "kube" in self.controllers:
                self._start_controller_manager(paths["kube-controller-manager"])
            if "training-operator" in self.controllers:
                self._start_training_operator(paths["training-operator"])
            if "jobset" in self.controllers:
                self._start_jobset(paths["jobset"])
            if "kube-scheduler" in self.controllers:
                self._start_kube_scheduler(paths["kube-scheduler"])
            if "kueue" in self.controllers:
                self._start_kueue(paths["kueue"])
            self._write_state()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops every process this object started; idempotent."""
        if self._order:
            _terminate(list(reversed(self._order)), children=self._children)
        self._order.clear()
        self._children.clear()
        (self.directory / STATE_FILE).unlink(missing_ok=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def restart(self, name: str, *, down_seconds: float = 0.0, timeout: float = 60.0) -> None:
        """Stops component ``name`` (SIGTERM), waits ``down_seconds``, and starts it again as it was.

        For fault-injection tests: etcd keeps its data directory, kube-apiserver its port.
        """
        entry = next((item for item in self._order if item[0] == name), None)
        if entry is None:
            raise UserError(f"{name} is not running in this cluster")
        _terminate([entry], children=self._children)
        self._order.remove(entry)
        self._children.pop(entry[1], None)
        time.sleep(down_seconds)
        child = self._spawn(name, self._argv[name])
        ready = self._ready.get(name)
        if ready is not None:
            self._wait(name, child, ready, timeout)
        self._write_state()

    def check_alive(self) -> None:
        """Raises UserError naming the first component whose process has exited."""
        for name, pid, _command in self._order:
            child = self._children.get(pid)
            if child is not None and child.poll() is not None:
                raise UserError(f"{name} exited with code {child.returncode}; {self._log_hint(name)}")

    # -- steps -----------------------------------------------------------------------------

    def _now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    def _make_pki(self) -> None:
        pki_dir = self.directory / "pki"
        pki_dir.mkdir(exist_ok=True)
        now = self._now()
        self._authority = pki.create_authority(pki_dir, now=now)
        pki.issue(
            self._authority,
            pki_dir,
            "apiserver",
            common_name="kube-apiserver",
            server=True,
            now=now,
        )
        self._admin = pki.issue(
            self._authority,
            pki_dir,
            "admin",
            common_name=ADMIN_USER,
            organizations=("system:masters",),
            now=now,
        )
        pki.create_service_account_key(pki_dir)

    def _credentials(self) -> tuple[pki.Authority, pki.KeyPair]:
        if self._authority is None or self._admin is None:
            raise RuntimeError("the cluster's certificates exist only after start()")
        return self._authority, self._admin

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.directory / "logs" / f"{name}.log").open("ab")
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if self.detached else die_with_parent,
            )
        finally:
            log.close()
        self._children[child.pid] = child
        self._order.append((name, child.pid, argv[0]))
        self._argv[name] = argv
        return child

    def _log_hint(self, name: str) -> str:
        path = self.directory / "logs" / f"{name}.log"
        try:
            lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        last = lines[-1].strip()[:300] if lines else "(no output)"
        return f"last log line: {last} (log: {path})"

    def _wait(self, what: str, child: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise UserError(f"{what} exited during startup with code {child.returncode}; {self._log_hint(what)}")
            try:
                if ready():
                    return
            except (OSError, ValueError):  # not listening yet, or an answer that is not yet JSON
                pass
            time.sleep(0.1)
        raise UserError(f"{what} was not ready within {timeout:.0f} s; {self._log_hint(what)}")

    def _start_etcd(self, etcd: Path) -> None:
        self.progress("starting etcd")
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://{LOOPBACK}:{client}"
        peer_url = f"http://{LOOPBACK}:{peer}"
        child = self._spawn(
            "etcd",
            [
                str(etcd),
                "--name=leitstand",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={self._etcd_url}",
                f"--advertise-client-urls={self._etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=leitstand={peer_url}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            answer: dict[str, str] = json.loads(_probe(f"{self._etcd_url}/health"))
            return answer.get("health") == "true"

        self._ready["etcd"] = healthy
        self._wait("etcd", child, healthy, 30)

    def _start_apiserver(self, apiserver: Path, timeout: float) -> None:
        self.progress("starting kube-apiserver")
        pki_dir = self.directory / "pki"
        port = self.api_port or free_port()
        self.server = f"https://{LOOPBACK}:{port}"
        child = self._spawn(
            "kube-apiserver",
            [
                str(apiserver),
                f"--etcd-servers={self._etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={port}",
                f"--cert-dir={pki_dir}",
                f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
                f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
                f"--client-ca-file={pki_dir / 'ca.crt'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki_dir / 'sa.key'}",
                f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                # No controller-manager runs here: nothing creates default ServiceAccounts
                # (the ServiceAccount plugin would reject every pod), and nothing lifts the
                # not-ready taint TaintNodesByCondition puts on new nodes (kube-scheduler
                # would find no node; kwok's nodes are Ready from the start).
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--allow-privileged=true",
                "--event-ttl=1h",
                # upstream's alpha gang API (Workload and PodGroup, scheduling.k8s.io/v1alpha2), which Leitstand
                # honours: a pod's spec.schedulingGroup names its PodGroup
                "--feature-gates=GenericWorkload=true",
                "--runtime-config=scheduling.k8s.io/v1alpha2=true",
                "--profiling=false",
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=200",
                *self.apiserver_args,
            ],
        )
        authority, admin = self._credentials()
        ca_pem = authority.files.cert.read_bytes()
        connection.write(
            self.kubeconfig,
            server=self.server,
            ca_pem=ca_pem,
            user=ADMIN_USER,
            client_cert_pem=admin.cert.read_bytes(),
            client_key_pem=admin.key.read_bytes(),
            cluster=f"leitstand-{self.name}",
        )
        context = connection.load(self.kubeconfig).ssl_context()

        def ready() -> bool:
            return _probe(f"{self.server}/readyz", context) == "ok"

        self._ready["kube-apiserver"] = ready
        self._wait("kube-apiserver", child, ready, timeout)

    def _audit_policy(self) -> Path:
        """Audits every pods/binding call, every write of the leader Lease and of Kueue's Workload status: the
        API's own record of who bound what, who led, and what Kueue admitted, when."""
        path = self.directory / "audit-policy.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    "rules": [
                        {
                            "level": "Metadata",
                            "verbs": ["create"],
                            "resources": [{"group": "", "resources": ["pods/binding"]}],
                        },
                        {
                            "level": "Metadata",
                            "verbs": ["create", "update", "patch"],
                            "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
                            "namespaces": ["leitstand-system"],
                        },
                        {  # Kueue's admissions, when it runs here (the side-by-side benchmark)
                            "level": "Metadata",
                            "verbs": ["update", "patch"],
                            "resources": [{"group": "kueue.x-k8s.io", "resources": ["workloads/status"]}],
                        },
                        {"level": "None"},
                    ],
                }
            )
        )
        return path

    def pid(self, name: str) -> int:
        """The process id of running component ``name`` (kueue, kube-scheduler, ...)."""
        for component, pid, _command in self._order:
            if component == name:
                return pid
        raise UserError(f"{name} is not running in this cluster")

    def bindings(self) -> list[Binding]:
        """Every ``pods/binding`` request the API server answered, in order, from its audit log."""
        return [entry for entry in self.audit() if entry.resource == "pods/binding"]

    def audit(self) -> list[Binding]:
        """Every audited request (bindings, and writes of the leader Lease), in order."""
        result = []
        try:
            lines = self.audit_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            entry = json.loads(line)
            target = entry.get("objectRef") or {}
            resource = "/".join(part for part in (target.get("resource"), target.get("subresource")) if part)
            result.append(
                Binding(
                    resource=resource,
                    pod=f"{target.get('namespace')}/{target.get('name')}",
                    user_agent=entry.get("userAgent", ""),
                    code=int((entry.get("responseStatus") or {}).get("code", 0)),
                    at=datetime.datetime.fromisoformat(entry["stageTimestamp"].replace("Z", "+00:00")),
                )
            )
        return result

    def _api(self) -> Client:
        return Client(connection.load(self.kubeconfig), timeout=60, user_agent="leitstand-dev-cluster")

    def _install_crds(self) -> None:
        crd_files = sorted(locations.data_dir("crds").glob("*.yaml"))
        if not crd_files:
            return
        self.progress(f"installing {len(crd_files)} CRDs")
        self._install_crd_files(crd_files)

    def _install_crd_files(self, crd_files: Sequence[Path]) -> None:
        """Creates every CRD of ``crd_files`` and waits until each is established."""
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

        async def install() -> None:
            async with self._api() as api:
                names = []
                for crd_file in crd_files:
                    for document in yaml.safe_load_all(crd_file.read_text()):
                        if not document:
                            continue
                        try:
                            await api.create(path, document)
                        except ApiError as error:
                            raise UserError(f"installing {crd_file.name} failed: {error}") from None
                        names.append(document["metadata"]["name"])
                deadline = time.monotonic() + 30
                for name in names:
                    while True:
                        crd = await api.get(f"{path}/{name}")
                        conditions = (crd.get("status") or {}).get("conditions") or []
                        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                            break
                        if time.monotonic() > deadline:
                            raise UserError(f"CRD {name} was not established within 30 s")
                        await asyncio.sleep(0.1)

        _run(install())

    def _create_namespace(self, name: str) -> None:
        """The namespace the operator's Lease lives in, as the Helm chart would create it."""

        async def create() -> None:
            async with self._api() as api:
                await _create(
                    api, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                )

        _run(create())

    def _start_kwok(self, kwok: Path) -> None:
        self.progress("starting kwok")
        port = free_port()
        stages = locations.data_dir("stages") / "stages.yaml"
        child = self._spawn(
            "kwok",
            [
                str(kwok),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={stages}",
                f"--manage-nodes-with-annotation-selector={profiles.KWOK_ANNOTATION}=fake",
                f"--server-address={LOOPBACK}:{port}",
                "--cidr=10.128.0.0/12",
                f"--node-ip={LOOPBACK}",
                "--node-lease-duration-seconds=0",
            ],
        )

        def healthy() -> bool:
            return _probe(f"http://{LOOPBACK}:{port}/healthz") == "ok"

        self._wait("kwok", child, healthy, 30)

    def _wait_healthy(
        self, name: str, child: subprocess.Popen[bytes], url: str, context: ssl.SSLContext | None = None
    ) -> None:
        """Waits (a minute at most) until a controller's health endpoint ``url`` answers ok."""
        self._wait(name, child, lambda: _probe(url, context) == "ok", 60)

    def _start_controller_manager(self, binary: Path) -> None:
        """kube-controller-manager with the controllers that make and clean up workload pods: Job, ReplicaSet,
        Deployment, garbage collector and namespace. No node lifecycle controller: it would taint kwok's nodes
        for want of a kubelet's heartbeat; no service-account controllers: the dev API server admits pods
        without a ServiceAccount."""
        self.progress("starting kube-controller-manager (job, replicaset, deployment, garbagecollector, namespace)")
        port = free_port()
        child = self._spawn(
            "kube-controller-manager",
            [
                str(binary),
                f"--kubeconfig={self.kubeconfig}",
                "--controllers=job,replicaset,deployment,garbagecollector,namespace",
                "--leader-elect=false",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                f"--cert-dir={self.directory / 'pki' / 'kube-controller-manager'}",
                "--concurrent-job-syncs=10",
                "--kube-api-qps=500",  # its defaults (20 and 30) make Jobs of many pods start slowly
                "--kube-api-burst=1000",
                "--v=1",
            ],
        )
        self._wait_healthy("kube-controller-manager", child, f"https://{LOOPBACK}:{port}/healthz", _insecure())

    def _start_training_operator(self, binary: Path) -> None:
        """The Kubeflow training-operator's PyTorchJob controller, after its CRD (from its own module)."""
        self.progress(f"starting the training-operator {binaries.TRAINING_OPERATOR_VERSION} (PyTorchJob)")
        self._install_crd_files([binaries.shipped(Path(binaries.PYTORCHJOB_CRD).name)])
        port = free_port()
        child = self._spawn(
            "training-operator",
            [
                str(binary),
                f"--kubeconfig={self.kubeconfig}",
                f"--health-probe-bind-address={LOOPBACK}:{port}",
                "--metrics-bind-address=0",
                "--controller-threads=4",
            ],
        )
        self._wait_healthy("training-operator", child, f"http://{LOOPBACK}:{port}/healthz")

    def _start_jobset(self, binary: Path) -> None:
        """The JobSet controllers and admission webhooks, after the JobSet CRD (from JobSet's own module); its
        Jobs' pods need the Job controller of ``kube``. The webhooks listen on loopback with a certificate of
        the cluster's CA, and are registered by URL (upstream registers them behind an in-cluster Service)."""
        self.progress(f"starting the JobSet controllers and webhooks {binaries.JOBSET_VERSION}")
        self._install_crd_files([binaries.shipped(Path(binaries.JOBSET_CRD).name)])
        authority, _admin = self._credentials()
        certificates = self.directory / "pki" / "jobset-webhook"
        certificates.mkdir(exist_ok=True)
        pki.issue(authority, certificates, "serving", common_name="jobset-webhook", server=True, now=self._now())
        probe, webhook = free_port(), free_port()
        child = self._spawn(
            "jobset",
            [
                str(binary),
                f"--kubeconfig={self.kubeconfig}",
                f"--health-probe-bind-address={LOOPBACK}:{probe}",
                f"--webhook-host={LOOPBACK}",
                f"--webhook-port={webhook}",
                f"--webhook-cert-dir={certificates}",
                "--webhook-cert-name=serving.crt",
                "--webhook-key-name=serving.key",
            ],
        )
        self._wait_healthy("jobset", child, f"http://{LOOPBACK}:{probe}/healthz")
        self._register_webhooks("jobset", binaries.shipped("jobset-webhooks.yaml"), webhook, lambda _path: True)

    def _start_kube_scheduler(self, binary: Path) -> None:
        """Upstream kube-scheduler of the same release (profile ``default-scheduler``), for the peers' stacks:
        client QPS and burst at 1,000 (its defaults, 50 and 100, make it the bottleneck of a benchmark)."""
        self.progress(f"starting kube-scheduler {binaries.KUBERNETES_VERSION}")
        config = self.directory / "kube-scheduler.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "leaderElection": {"leaderElect": False},
                    "clientConnection": {"kubeconfig": str(self.kubeconfig), "qps": 1000, "burst": 1000},
                }
            )
        )
        port = free_port()
        child = self._spawn(
            "kube-scheduler",
            [str(binary), f"--config={config}", f"--bind-address={LOOPBACK}", f"--secure-port={port}",
             f"--cert-dir={self.directory / 'pki' / 'kube-scheduler'}", "--v=1"],
        )  # fmt: skip
        self._wait_healthy("kube-scheduler", child, f"https://{LOOPBACK}:{port}/healthz", _insecure())

    def _start_kueue(self, binary: Path) -> None:
        """Kueue's manager (batch/v1 Job integration, topology-aware scheduling, fair sharing), after its CRDs (from
        its own module). Its webhooks listen on loopback with a certificate of the cluster's CA and are registered
        by URL, only those it serves; it admits Jobs labelled ``kueue.x-k8s.io/queue-name`` and leaves the binding
        to kube-scheduler. CPU and memory are left out of quota, as Leitstand leaves them."""
        self.progress(f"starting Kueue {binaries.KUEUE_VERSION} (batch/v1 Job, topology-aware scheduling)")
        self._install_crd_files([binaries.shipped(Path(crd).name) for crd in binaries.KUEUE_CRDS])
        self._create_namespace("kueue-system")
        authority, _admin = self._credentials()
        certificates = self.directory / "pki" / "kueue-webhook"
        certificates.mkdir(exist_ok=True)
        pki.issue(authority, certificates, "tls", common_name="kueue-webhook", server=True, now=self._now())
        probe, webhook = free_port(), free_port()
        config = self.directory / "kueue.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "config.kueue.x-k8s.io/v1beta2",
                    "kind": "Configuration",
                    "namespace": "kueue-system",
                    "health": {"healthProbeBindAddress": f"{LOOPBACK}:{probe}"},
                    "metrics": {"bindAddress": "0"},
                    "webhook": {"host": LOOPBACK, "port": webhook, "certDir": str(certificates)},
                    "leaderElection": {"leaderElect": False},
                    "internalCertManagement": {"enable": False},
                    "manageJobsWithoutQueueName": False,
                    "clientConnection": {"qps": 1000, "burst": 1000},
                    "integrations": {"frameworks": ["batch/job"]},
                    "fairSharing": {"preemptionStrategies": ["LessThanOrEqualToFinalShare", "LessThanInitialShare"]},
                    "resources": {"excludeResourcePrefixes": ["cpu", "memory", "ephemeral-storage", "rdma/"]},
                }
            )
        )
        child = self._spawn("kueue", [str(binary), f"--config={config}", f"--kubeconfig={self.kubeconfig}"])
        self._wait_healthy("kueue", child, f"http://{LOOPBACK}:{probe}/readyz")  # ready: its webhooks listen
        self._register_webhooks("kueue", binaries.shipped("kueue-webhooks.yaml"), webhook, kueue_serves)

    def _register_webhooks(self, owner: str, manifests: Path, port: int, served: Callable[[str], bool]) -> None:
        """Registers the webhook configurations of ``manifests`` by URL on loopback ``port``, with the cluster's
        CA, keeping only the hooks whose path ``served`` accepts (a hook nobody serves would refuse its objects)."""
        authority, _admin = self._credentials()
        ca_bundle = base64.b64encode(authority.files.cert.read_bytes()).decode()
        configurations = []
        for document in yaml.safe_load_all(manifests.read_text()):
            if not document:
                continue
            document["metadata"]["name"] = f"{owner}-{document['metadata']['name']}"
            hooks = []
            for hook in document.get("webhooks") or []:
                path = hook["clientConfig"]["service"]["path"]
                if served(path):
                    hook["clientConfig"] = {"url": f"https://{LOOPBACK}:{port}{path}", "caBundle": ca_bundle}
                    hooks.append(hook)
            document["webhooks"] = hooks
            configurations.append(document)

        async def register() -> None:
            async with self._api() as api:
                for document in configurations:
                    plural = document["kind"].lower() + "s"
                    await _create(api, f"/apis/admissionregistration.k8s.io/v1/{plural}", document)

        _run(register())

    def _create_nodes(self, timeout: float) -> None:
        manifests = profiles.nodes(self.profile)
        self.progress(f"creating {len(manifests)} nodes ({self.profile.gpu_count} GPUs)")
        kwok_child = self._children[self._order[-1][1]]
        within = timeout + len(manifests) * 0.05

        async def create_and_wait() -> None:
            async with self._api() as api:
                limit = asyncio.Semaphore(32)

                async def create(node: dict[str, Any]) -> None:
                    async with limit:
                        await _create(api, "/api/v1/nodes", node)

                await asyncio.gather(*(create(node) for node in manifests))
                self.progress("waiting for kwok to report the nodes Ready")
                deadline = time.monotonic() + within
                while time.monotonic() < deadline:
                    if kwok_child.poll() is not None:
                        raise UserError(f"kwok exited with code {kwok_child.returncode}; {self._log_hint('kwok')}")
                    listed = await api.list("/api/v1/nodes", label_selector="type=kwok")
                    ready = sum(1 for node in listed["items"] if _ready(node))
                    if ready >= len(manifests):
                        return
                    await asyncio.sleep(0.2)
                raise UserError(f"kwok did not report {len(manifests)} nodes Ready within {within:.0f} s; "
                                f"{self._log_hint('kwok')}")  # fmt: skip

        _run(create_and_wait())

    def _write_state(self) -> None:
        state = State(
            name=self.name,
            directory=str(self.directory),
            profile=self.profile.name,
            kubeconfig=str(self.kubeconfig),
            server=self.server,
            etcd=self._etcd_url,
            nodes=self.profile.node_count,
            gpus=self.profile.gpu_count,
            started=self._now().isoformat(timespec="seconds"),
            detached=self.detached,
            pids={name: pid for name, pid, _ in self._order},
            commands={name: command for name, _, command in self._order},
        )
        (self.directory / STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n")

    # -- users -----------------------------------------------------------------------------

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig for ``user`` (client certificate signed by the cluster CA)."""
        authority, _admin = self._credentials()
        pki_dir = self.directory / "pki"
        pair = pki.issue(
            authority,
            pki_dir,
            f"user-{user}",
            common_name=user,
            organizations=groups,
            now=self._now(),
        )
        path = self.directory / f"kubeconfig-{user}"
        connection.write(
            path,
            server=self.server,
            ca_pem=authority.files.cert.read_bytes(),
            user=user,
            client_cert_pem=pair.cert.read_bytes(),
            client_key_pem=pair.key.read_bytes(),
            cluster=f"leitstand-{self.name}",
        )
        return path


def down(directory: Path) -> State | None:
    """Stops the detached cluster recorded in ``directory``; returns its state, or None."""
    state = read_state(directory)
    if state is None:
        return None
    order = [(name, pid, state.commands[name]) for name, pid in state.pids.items()]
    _terminate(list(reversed(order)), children={})
    shutil.rmtree(directory, ignore_errors=True)
    return state
