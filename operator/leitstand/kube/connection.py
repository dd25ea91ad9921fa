"""Where the API server is and who Leitstand is there: found the way kubectl finds it.

The official ``kubernetes`` client reads the configuration: ``--kubeconfig``,
else the ``KUBECONFIG`` list merged (first file wins a name), else
``~/.kube/config``, else the pod's service account; contexts, clusters with an
inline or file CA, ``insecure-skip-tls-verify``, ``tls-server-name`` and
``proxy-url``; tokens, token files, client certificates and auth providers
(OIDC, GCP). Exec credential plugins (kubelogin, the clouds' plugins, Teleport,
Pinniped) run through the library's ``ExecProvider``, but their credential is
kept here, as client-go keeps it: cached until the plugin's
``expirationTimestamp``, run again then or when the server answers 401, and a
plugin that fails is an error naming its command and its stderr (the library's
loader would log that and carry on without credentials).

``kube.client`` talks to the server over aiohttp with what this module hands
it: a ``Connection`` (where, and impersonating whom) whose ``Credentials`` give
the Authorization header and client certificate of the moment. No credential
appears in a repr, a log line or an error message.
"""

import atexit
import base64
import contextlib
import datetime
import os
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import Configuration
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.exec_provider import ExecProvider
from kubernetes.config.incluster_config import InClusterConfigLoader
from kubernetes.config.kube_config import ConfigNode, KubeConfigLoader, KubeConfigMerger

from leitstand.errors import UserError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_TOKEN_SECONDS = 60  # the projected token file is read again this often, as the library does
Clock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class Credential:
    """One credential as it stands: the Authorization header and/or a client certificate, until ``expiry``."""

    authorization: str | None = field(default=None, repr=False)
    cert_file: str | None = None
    key_file: str | None = None
    expiry: datetime.datetime | None = None  # aware; None: until the server refuses it


class Credentials:
    """The current credential of one user: loaded on first use, and again once expired or refused.

    Thread-safe: exec plugins run in a worker thread (``asyncio.to_thread``) so
    the event loop never waits on them, and concurrent refusals run the plugin once.
    """

    def __init__(self, load: Callable[[], Credential], *, user: str, now: Clock = _utc_now) -> None:
        self._load = load
        self.user = user
        self._now = now
        self._current: Credential | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r})"

    def fresh(self) -> Credential | None:
        """The cached credential while it has not expired, else None (``current`` then loads one)."""
        credential = self._current
        if credential is None or (credential.expiry is not None and self._now() >= credential.expiry):
            return None
        return credential

    def current(self) -> Credential:
        """The credential to send now, loading it when there is none or it expired."""
        with self._lock:
            credential = self.fresh()
            if credential is None:
                credential = self._current = self._load()
            return credential

    def refresh(self, refused: Credential | None) -> Credential:
        """A new credential after the server refused ``refused`` (unless another caller has already replaced it)."""
        with self._lock:
            if self._current is None or self._current is refused:
                self._current = self._load()
            return self._current


@dataclass(frozen=True, slots=True)
class Connection:
    """One API server as one user: where, how to trust it, whose credentials, whom to impersonate."""

    server: str
    credentials: Credentials = field(compare=False)
    ca_file: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    proxy: str | None = None
    namespace: str = "default"
    context: str | None = None
    impersonate_user: str | None = None
    impersonate_groups: tuple[str, ...] = ()

    @property
    def ca_pem(self) -> bytes | None:
        return Path(self.ca_file).read_bytes() if self.ca_file else None

    def ssl_context(self, credential: Credential | None = None) -> ssl.SSLContext:
        """TLS that trusts the cluster CA and presents the credential's client certificate (if any)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        credential = credential or self.credentials.current()
        if credential.cert_file and credential.key_file:
            context.load_cert_chain(credential.cert_file, credential.key_file)
        return context

    def impersonation(self) -> list[tuple[str, str]]:
        """The ``Impersonate-*`` headers of ``--as`` / ``--as-group``: one line per group, as the server reads them."""
        if not self.impersonate_user:
            return []
        return [("Impersonate-User", self.impersonate_user)] + [
            ("Impersonate-Group", g) for g in self.impersonate_groups
        ]


# -- private files for inline certificates an exec plugin returns ---------------------------------

_private_files: list[str] = []


def _remove_private_files() -> None:
    for name in _private_files:
        with contextlib.suppress(OSError):
            os.remove(name)


atexit.register(_remove_private_files)


def _private_file(data: str | bytes) -> str:
    descriptor, name = tempfile.mkstemp(prefix="leitstand-credential-")  # mode 0600
    with os.fdopen(descriptor, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
    _private_files.append(name)
    return name


# -- kubeconfig --------------------------------------------------------------------------------------


def _named(nodes: Any, name: str) -> ConfigNode | None:
    for node in nodes or []:
        if isinstance(node, ConfigNode) and node.value.get("name") == name:
            return node
    return None


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _run_exec_plugin(user: str, exec_config: ConfigNode, cluster: ConfigNode, base: str) -> Credential:
    """Runs the user's exec plugin once; its failure is one line naming the command and its stderr."""
    command = str(exec_config.value.get("command", ""))
    if exec_config.value.get("interactiveMode") == "Always" and not sys.stdin.isatty():
        raise UserError(
            f"exec plugin {command!r} of user {user!r} needs a terminal (interactiveMode: Always); run in one"
        )
    try:
        status = ExecProvider(exec_config, base, cluster).run()
    except OSError as error:
        hint = exec_config.value.get("installHint")
        reason = error.strerror or str(error)
        raise UserError(
            f"exec plugin {command!r} of user {user!r} cannot run: {reason}" + (f"; {_one_line(hint)}" if hint else "")
        ) from None
    except ConfigException as error:
        message = str(error).removeprefix("exec: ")
        raise UserError(f"exec plugin {command!r} of user {user!r} failed: {_one_line(message)}") from None
    expiry = None
    if status.get("expirationTimestamp"):
        try:
            expiry = datetime.datetime.fromisoformat(str(status["expirationTimestamp"]))
        except ValueError:
            raise UserError(
                f"exec plugin {command!r} of user {user!r} returned an expirationTimestamp that is not RFC 3339"
            ) from None
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=datetime.UTC)
    if status.get("token"):
        return Credential(authorization=f"Bearer {status['token']}", expiry=expiry)
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        return Credential(
            cert_file=_private_file(status["clientCertificateData"]),
            key_file=_private_file(status["clientKeyData"]),
            expiry=expiry,
        )
    raise UserError(
        f"exec plugin {command!r} of user {user!r} returned neither a token nor a client certificate and key"
    )


def _library_credential(configuration: Configuration) -> Credential:
    authorization = configuration.get_api_key_with_prefix("BearerToken")
    return Credential(
        authorization=authorization.strip() if authorization else None,  # token files end in a newline
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
    )


def _from_kubeconfig(
    paths: str, where: str, *, context: str | None, as_user: str | None, as_groups: Sequence[str]
) -> Connection:
    try:
        merger = KubeConfigMerger(paths)
        merged = merger.config
        # kubectl takes the first current-context set in the list; the library's merger the last
        firsts = [merger.config_files[path].get("current-context") for path in merger.paths]
        current = next((name for name in firsts if name), None)
    except (OSError, yaml.YAMLError, AttributeError, TypeError) as error:
        raise UserError(f"cannot read kubeconfig {where}: {_one_line(str(error))}") from None
    except ConfigException as error:
        raise UserError(f"kubeconfig {where}: {_one_line(str(error))}") from None
    if not isinstance(merged, ConfigNode) or not isinstance(merged.value, dict):
        raise UserError(f"kubeconfig {where} is empty or not a mapping")
    config = merged.value
    contexts = [str(node.value.get("name")) for node in config.get("contexts") or [] if isinstance(node, ConfigNode)]
    name = context or current
    if not name:
        raise UserError(f"kubeconfig {where} has no current-context; pass --context (one of: {', '.join(contexts)})")
    context_node = _named(config.get("contexts"), name)
    if context_node is None:
        raise UserError(f"kubeconfig {where} has no context {name!r}; it has: {', '.join(contexts) or 'none'}")
    settings = context_node.value.get("context") or {}
    cluster_node = _named(config.get("clusters"), str(settings.get("cluster", "")))
    if cluster_node is None:
        raise UserError(
            f"kubeconfig {where}: context {name!r} names cluster {settings.get('cluster')!r}, which it lacks"
        )
    user_name = str(settings.get("user") or "")
    user_node = _named(config.get("users"), user_name) if user_name else None
    user = dict((user_node.value.get("user") or {}) if user_node is not None else {})
    exec_config = user.pop("exec", None)
    if user_node is not None and exec_config is not None:
        # the library's loader would run the plugin and swallow its failure: it loads the rest, Leitstand the plugin
        user_node.value = {**user_node.value, "user": user}

    def load_rest() -> Configuration:
        configuration = Configuration()
        try:
            KubeConfigLoader(config_dict=merged, active_context=name, config_base_path=None).load_and_set(configuration)
        except ConfigException as error:
            raise UserError(f"kubeconfig {where}, context {name!r}: {_one_line(str(error))}") from None
        except OSError as error:
            raise UserError(f"kubeconfig {where}, context {name!r}: {error.strerror}: {error.filename}") from None
        return configuration

    configuration = load_rest()
    if exec_config is not None and user_node is not None:
        exec_node = ConfigNode(f"{user_node.name}/user/exec", exec_config, user_node.path)
        base = os.path.dirname(os.path.abspath(user_node.path)) if user_node.path else ""
        certificate = Credential(cert_file=configuration.cert_file, key_file=configuration.key_file)

        def load() -> Credential:
            plugin = _run_exec_plugin(user_name, exec_node, cluster_node, base)
            if plugin.cert_file is None and certificate.cert_file:  # a token from the plugin beside a kubeconfig cert
                return Credential(plugin.authorization, certificate.cert_file, certificate.key_file, plugin.expiry)
            return plugin
    else:

        def load() -> Credential:
            return _library_credential(load_rest())

    groups = tuple(as_groups) or tuple(user.get("as-groups") or ())
    return Connection(
        server=str(configuration.host).rstrip("/"),
        credentials=Credentials(load, user=user_name or "(none)"),
        ca_file=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        tls_server_name=configuration.tls_server_name,
        proxy=configuration.proxy,
        namespace=str(settings.get("namespace") or "default"),
        context=name,
        impersonate_user=as_user or user.get("as"),
        impersonate_groups=groups,
    )


def in_cluster(directory: Path | None = None) -> Connection | None:
    """The pod's service-account connection (from ``SERVICE_ACCOUNT_DIR``), or None when not in a pod."""
    directory = directory or SERVICE_ACCOUNT_DIR
    if not os.environ.get("KUBERNETES_SERVICE_HOST") or not (directory / "token").is_file():
        return None

    def configure() -> Configuration:
        configuration = Configuration()
        try:
            InClusterConfigLoader(str(directory / "token"), str(directory / "ca.crt")).load_and_set(configuration)
        except ConfigException as error:
            raise UserError(f"in-cluster service account: {error}") from None
        return configuration

    def load() -> Credential:
        credential = _library_credential(configure())
        expiry = _utc_now() + datetime.timedelta(seconds=IN_CLUSTER_TOKEN_SECONDS)
        return Credential(credential.authorization, expiry=expiry)  # the kubelet rotates the file: read it again

    configuration = configure()
    namespace_file = directory / "namespace"
    return Connection(
        server=str(configuration.host).rstrip("/"),
        credentials=Credentials(load, user="(service account)"),
        ca_file=configuration.ssl_ca_cert,
        namespace=namespace_file.read_text().strip() if namespace_file.is_file() else "default",
    )


def load(
    kubeconfig: Path | str | None = None,
    *,
    context: str | None = None,
    as_user: str | None = None,
    as_groups: Sequence[str] = (),
) -> Connection:
    """The connection kubectl would use: ``kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``, else in-cluster.

    ``context`` overrides the current context; ``as_user`` and ``as_groups``
    impersonate (``--as`` / ``--as-group``), as the kubeconfig's ``as`` fields do.
    """
    if as_groups and not as_user:
        raise UserError("--as-group needs --as: the API server impersonates groups only with a user")
    if kubeconfig is not None:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise UserError(f"no kubeconfig at {path}; check --kubeconfig")
        return _from_kubeconfig(str(path), str(path), context=context, as_user=as_user, as_groups=as_groups)
    listed = os.environ.get("KUBECONFIG", "")
    if any(part and Path(part).expanduser().is_file() for part in listed.split(os.pathsep)):
        return _from_kubeconfig(
            listed, f"$KUBECONFIG ({listed})", context=context, as_user=as_user, as_groups=as_groups
        )
    default = Path(os.path.expanduser("~/.kube/config"))  # no error for a user without a home (the image)
    if not listed and default.is_file():
        return _from_kubeconfig(str(default), str(default), context=context, as_user=as_user, as_groups=as_groups)
    inside = in_cluster()
    if inside is not None:
        if as_user or as_groups:
            return Connection(
                server=inside.server,
                credentials=inside.credentials,
                ca_file=inside.ca_file,
                namespace=inside.namespace,
                impersonate_user=as_user,
                impersonate_groups=tuple(as_groups),
            )
        return inside
    if listed:
        raise UserError(f"none of the files in KUBECONFIG ({listed}) exists; check the variable or pass --kubeconfig")
    raise UserError(f"no kubeconfig at {default} and not in a pod; pass --kubeconfig or set KUBECONFIG")


def write(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    user: str,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    token: str | None = None,
    cluster: str = "leitstand",
) -> None:
    """Writes a single-context kubeconfig at ``path`` (mode 0600): the dev cluster's and the tests'."""
    credentials: dict[str, str] = {}
    if client_cert_pem is not None and client_key_pem is not None:
        credentials["client-certificate-data"] = base64.b64encode(client_cert_pem).decode()
        credentials["client-key-data"] = base64.b64encode(client_key_pem).decode()
    if token is not None:
        credentials["token"] = token
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
