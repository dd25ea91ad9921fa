"""Loading connections as kubectl does: merged KUBECONFIG lists, contexts, exec plugins, in-cluster, errors.

These read real files and run real plugin scripts; only the API server is absent
(the e2e tests in ``tests/e2e/test_kubeconfigs.py`` bring it).
"""

import base64
import datetime
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from leitstand.errors import UserError
from leitstand.kube import connection

CA = b"-----BEGIN CERTIFICATE-----\nnot checked until a handshake\n-----END CERTIFICATE-----\n"


def kubeconfig(path: Path, *, contexts: dict[str, dict[str, str]], users: dict[str, dict[str, Any]],
               clusters: dict[str, str], current: str | None = None) -> Path:  # fmt: skip
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": base64.b64encode(CA).decode()}}
            for name, server in clusters.items()
        ],
        "users": [{"name": name, "user": user} for name, user in users.items()],
        "contexts": [{"name": name, "context": context} for name, context in contexts.items()],
    }
    if current:
        document["current-context"] = current
    path.write_text(yaml.safe_dump(document))
    return path


def plugin(directory: Path, body: str) -> Path:
    """An exec credential plugin: a Python script that counts its runs in ``calls``."""
    script = directory / "plugin.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, pathlib, sys\n"
        "calls = pathlib.Path(__file__).with_name('calls')\n"
        "calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n" + body
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def exec_user(script: Path, **extra: Any) -> dict[str, Any]:
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script),
                     "interactiveMode": "Never", **extra}}  # fmt: skip


def calls(directory: Path) -> int:
    return int((directory / "calls").read_text())


@pytest.fixture(autouse=True)
def no_ambient_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_a_kubeconfig_list_merges_with_the_first_file_winning_and_the_context_namespace_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(tmp_path / "a", current="admin", clusters={"site": "https://first:6443"},
                       users={"root": {"token": "first-token"}}, contexts={"admin": {"cluster": "site", "user": "root"}})  # fmt: skip
    second = kubeconfig(tmp_path / "b", current="ignored", clusters={"site": "https://second:6443"},
                        users={"root": {"token": "second-token"}, "ann": {"token": "ann-token"}},
                        contexts={"team": {"cluster": "site", "user": "ann", "namespace": "team-a"}})  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")

    admin = connection.load()
    assert (admin.server, admin.context, admin.namespace) == ("https://first:6443", "admin", "default")
    assert admin.credentials.current().authorization == "Bearer first-token"

    team = connection.load(context="team")
    assert (team.server, team.namespace) == ("https://first:6443", "team-a")  # the first file's cluster "site"
    assert team.credentials.current().authorization == "Bearer ann-token"
    assert team.ca_pem == CA


def test_a_context_that_is_not_there_names_the_ones_that_are(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", current="a", clusters={"c": "https://x"}, users={"u": {"token": "t"}},
                      contexts={"a": {"cluster": "c", "user": "u"}, "b": {"cluster": "c", "user": "u"}})  # fmt: skip
    with pytest.raises(UserError, match=r"has no context 'prod'; it has: a, b"):
        connection.load(path, context="prod")
    no_current = kubeconfig(tmp_path / "bare", clusters={"c": "https://x"}, users={}, contexts={"a": {"cluster": "c"}})
    with pytest.raises(UserError, match="has no current-context; pass --context"):
        connection.load(no_current)
    with pytest.raises(UserError, match=r"no kubeconfig at .*nowhere"):
        connection.load(tmp_path / "nowhere")


def test_unreadable_kubeconfigs_and_missing_files_are_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "list").write_text("- just\n- a list\n")
    (tmp_path / "broken").write_text("clusters: [\n")
    for name in ("list", "broken"):
        with pytest.raises(UserError) as error:
            connection.load(tmp_path / name)
        assert "\n" not in str(error.value)
    missing_ca = tmp_path / "missing-ca"
    missing_ca.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://x", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}], "current-context": "a",
    }))  # fmt: skip
    with pytest.raises(UserError, match="context 'a'"):
        connection.load(missing_ca)


def test_relative_files_resolve_beside_the_kubeconfig_that_names_them(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "ca.crt").write_bytes(CA)
    (tmp_path / "site" / "token").write_text("from-a-file\n")
    path = tmp_path / "site" / "config"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://x", "certificate-authority": "ca.crt",
                                               "tls-server-name": "api.internal", "proxy-url": "http://proxy:3128"}}],
        "users": [{"name": "u", "user": {"tokenFile": "token", "as": "ann", "as-groups": ["ml"]}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}], "current-context": "a",
    }))  # fmt: skip
    loaded = connection.load(path)
    assert loaded.ca_pem == CA
    assert (loaded.tls_server_name, loaded.proxy) == ("api.internal", "http://proxy:3128")
    assert loaded.credentials.current().authorization == "Bearer from-a-file"
    assert loaded.impersonation() == [("Impersonate-User", "ann"), ("Impersonate-Group", "ml")]
    flags = connection.load(path, as_user="bob", as_groups=["a", "b"])
    assert flags.impersonation() == [
        ("Impersonate-User", "bob"),
        ("Impersonate-Group", "a"),
        ("Impersonate-Group", "b"),
    ]
    with pytest.raises(UserError, match="--as-group needs --as"):
        connection.load(path, as_groups=["a"])


def test_an_exec_plugin_credential_is_kept_until_it_expires_and_loaded_again_when_refused(tmp_path: Path) -> None:
    script = plugin(tmp_path, (
        "assert info['apiVersion'] == 'client.authentication.k8s.io/v1', info\n"
        "n = int(calls.read_text())\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',\n"
        "                  'status': {'token': f'token-{n}', 'expirationTimestamp': '2026-11-30T12:00:00Z'}}))\n"
    ))  # fmt: skip
    path = kubeconfig(tmp_path / "config", current="a", clusters={"c": "https://x"}, users={"oidc": exec_user(script)},
                      contexts={"a": {"cluster": "c", "user": "oidc"}})  # fmt: skip
    now = [datetime.datetime(2026, 11, 30, 11, 0, tzinfo=datetime.UTC)]
    loaded = connection.load(path)
    credentials = connection.Credentials(loaded.credentials._load, user="oidc", now=lambda: now[0])

    first = credentials.current()
    assert first.authorization == "Bearer token-1"
    assert first.expiry == datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)
    assert credentials.current() is first  # cached while it lasts
    assert calls(tmp_path) == 1

    now[0] = datetime.datetime(2026, 11, 30, 12, 0, 1, tzinfo=datetime.UTC)
    assert credentials.fresh() is None
    second = credentials.current()
    assert second.authorization == "Bearer token-2"

    third = credentials.refresh(second)  # the server said 401
    assert third.authorization == "Bearer token-3"
    assert credentials.refresh(second) is third  # a second caller refused the same one: the plugin does not run again
    assert calls(tmp_path) == 3


def test_a_failing_plugin_is_one_line_with_its_command_and_stderr(tmp_path: Path) -> None:
    script = plugin(
        tmp_path, "print('login.example.org: connection refused\\nrun kubelogin again', file=sys.stderr)\nsys.exit(3)\n"
    )
    path = kubeconfig(tmp_path / "config", current="a", clusters={"c": "https://x"}, users={"oidc": exec_user(script)},
                      contexts={"a": {"cluster": "c", "user": "oidc"}})  # fmt: skip
    loaded = connection.load(path)  # plugins run when a credential is needed, not when the kubeconfig is read
    with pytest.raises(UserError) as error:
        loaded.credentials.current()
    assert str(error.value) == (
        f"exec plugin '{script}' of user 'oidc' failed: process returned 3. "
        "login.example.org: connection refused run kubelogin again"
    )


def test_a_missing_plugin_says_so_with_its_install_hint(tmp_path: Path) -> None:
    user = exec_user(tmp_path / "kubelogin", installHint="install kubelogin: https://example.org/kubelogin\n")
    path = kubeconfig(tmp_path / "config", current="a", clusters={"c": "https://x"}, users={"oidc": user},
                      contexts={"a": {"cluster": "c", "user": "oidc"}})  # fmt: skip
    with pytest.raises(
        UserError,
        match=r"kubelogin' of user 'oidc' cannot run: No such file or directory; install kubelogin: https://example.org/kubelogin$",
    ):
        connection.load(path).credentials.current()


def test_a_plugin_may_return_a_client_certificate_instead_of_a_token(tmp_path: Path) -> None:
    script = plugin(tmp_path, (
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',\n"
        "                  'status': {'clientCertificateData': 'CERT', 'clientKeyData': 'KEY'}}))\n"
    ))  # fmt: skip
    path = kubeconfig(tmp_path / "config", current="a", clusters={"c": "https://x"}, users={"p": exec_user(script)},
                      contexts={"a": {"cluster": "c", "user": "p"}})  # fmt: skip
    credential = connection.load(path).credentials.current()
    assert credential.authorization is None
    assert credential.expiry is None
    assert Path(credential.cert_file or "").read_text() == "CERT"
    assert Path(credential.key_file or "").read_text() == "KEY"
    assert stat.S_IMODE(Path(credential.key_file or "").stat().st_mode) == 0o600


def test_in_a_pod_the_service_account_is_used_and_its_token_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_bytes(CA)
    (account / "namespace").write_text("leitstand-system\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(connection, "SERVICE_ACCOUNT_DIR", account)

    inside = connection.load()
    assert (inside.server, inside.namespace, inside.ca_pem) == ("https://10.96.0.1:443", "leitstand-system", CA)
    first = inside.credentials.current()
    assert (first.authorization or "").lower() == "bearer pod-token"
    assert first.expiry is not None  # read again within a minute: the kubelet rotates the file
    (account / "token").write_text("rotated")
    assert (inside.credentials.refresh(first).authorization or "").lower() == "bearer rotated"


def test_credentials_never_show_in_a_repr_or_an_error(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", current="a", clusters={"c": "https://x"},
                      users={"u": {"token": "s3cret-token"}}, contexts={"a": {"cluster": "c", "user": "u"}})  # fmt: skip
    loaded = connection.load(path)
    credential = loaded.credentials.current()
    for text in (repr(loaded), repr(credential), repr(loaded.credentials), json.dumps(str(loaded))):
        assert "s3cret" not in text
