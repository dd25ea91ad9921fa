"""Connection settings from a kubeconfig file or from inside a pod.

Supports what Leitstand's users and its own clusters need: a server URL, a CA
(file or inline data, or ``insecure-skip-tls-verify``), and a client
certificate or a bearer token (inline or from a file). Exec and auth-provider
plugins are refused with a clear error rather than half supported.
"""

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leitstand.errors import UserError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True, slots=True)
class Connection:
    """Everything needed to talk to one API server as one user."""

    server: str
    ca_pem: bytes | None = None
    insecure: bool = False
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None
    token_file: Path | None = None
    namespace: str = "default"

    def bearer_token(self) -> str | None:
        """The current token; re-read from ``token_file`` so rotated tokens are picked up."""
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context that trusts the cluster CA and presents the client certificate."""
        context = ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_pem is not None:
            context = ssl.create_default_context(cadata=self.ca_pem.decode())
        if self.client_cert_pem is not None and self.client_key_pem is not None:
            # ssl can load a certificate chain only from files: write a private copy.
            with tempfile.TemporaryDirectory(prefix="leitstand-tls-") as directory:
                cert = Path(directory) / "client.crt"
                key = Path(directory) / "client.key"
                cert.write_bytes(self.client_cert_pem)
                key.touch(mode=0o600)
                key.write_bytes(self.client_key_pem)
                context.load_cert_chain(cert, key)
        return context


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    inline = entry.get(f"{key}-data")
    if inline:
        return base64.b64decode(inline)
    path = entry.get(key)
    if path:
        resolved = (base / path) if not Path(path).is_absolute() else Path(path)
        try:
            return resolved.read_bytes()
        except OSError as error:
            raise UserError(f"kubeconfig names {key} {resolved}, which cannot be read: {error.strerror}") from None
    return None


def _named(items: list[dict[str, Any]], name: str, what: str, path: Path) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            body = item.get(what)
            return body if isinstance(body, dict) else {}
    raise UserError(f"kubeconfig {path} has no {what} named {name!r}")


def from_kubeconfig(path: Path, *, context: str | None = None) -> Connection:
    """The connection of ``context`` (default: current-context) in the kubeconfig at ``path``."""
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as error:
        raise UserError(f"cannot read kubeconfig {path}: {error.strerror}") from None
    except yaml.YAMLError:
        raise UserError(f"kubeconfig {path} is not valid YAML") from None
    if not isinstance(config, dict):
        raise UserError(f"kubeconfig {path} is empty or not a mapping")
    name = context or config.get("current-context")
    if not name:
        raise UserError(f"kubeconfig {path} has no current-context; pass --context")
    ctx = _named(config.get("contexts", []), name, "context", path)
    cluster = _named(config.get("clusters", []), ctx.get("cluster", ""), "cluster", path)
    user = _named(config.get("users", []), ctx.get("user", ""), "user", path) if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise UserError(
            f"kubeconfig {path}: user {ctx.get('user')!r} uses an exec or auth-provider plugin, "
            "which leitstand does not run; use a token or client certificate"
        )
    base = path.parent
    token_file = user.get("tokenFile")
    return Connection(
        server=str(cluster.get("server", "")).rstrip("/"),
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        client_cert_pem=_data_or_file(user, "client-certificate", base),
        client_key_pem=_data_or_file(user, "client-key", base),
        token=user.get("token"),
        token_file=Path(token_file) if token_file else None,
        namespace=str(ctx.get("namespace") or "default"),
    )


def in_cluster() -> Connection | None:
    """The pod's service-account connection, or None when not running in a pod."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    token = SERVICE_ACCOUNT_DIR / "token"
    if not host or not token.is_file():
        return None
    namespace_file = SERVICE_ACCOUNT_DIR / "namespace"
    return Connection(
        server=f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}",
        ca_pem=(SERVICE_ACCOUNT_DIR / "ca.crt").read_bytes(),
        token_file=token,
        namespace=namespace_file.read_text().strip() if namespace_file.is_file() else "default",
    )


def default_path() -> Path:
    """``$KUBECONFIG`` (its first entry) or ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def load(path: Path | None = None, *, context: str | None = None) -> Connection:
    """The connection to use: an explicit kubeconfig, else in-cluster, else the default file."""
    if path is None:
        inside = in_cluster()
        if inside is not None:
            return inside
        path = default_path()
        if not path.is_file():
            raise UserError(f"no kubeconfig at {path}; pass --kubeconfig or set KUBECONFIG")
    return from_kubeconfig(path, context=context)


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
    """Writes a single-context kubeconfig at ``path`` (mode 0600)."""
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
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
