"""Certificates and keys for a local control plane, made fresh for every cluster.

One CA signs the API server's serving certificate (valid for 127.0.0.1 and
localhost) and the client certificates: the admin (group ``system:masters``)
and any user a test asks for. A separate RSA key signs service-account tokens.
Keys never leave the cluster's state directory, which is private to its owner.
"""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """PEM files of one certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Authority:
    """The cluster CA: its PEM files and, in memory, what it needs to sign."""

    files: KeyPair
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def create_authority(directory: Path, *, now: datetime.datetime) -> Authority:
    """Creates ``ca.crt`` / ``ca.key`` in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leitstand-dev-cluster-ca")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    files = KeyPair(directory / "ca.crt", directory / "ca.key")
    files.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key, key)
    return Authority(files, certificate, key)


def issue(
    authority: Authority,
    directory: Path,
    stem: str,
    *,
    common_name: str,
    organizations: tuple[str, ...] = (),
    server: bool = False,
    now: datetime.datetime,
) -> KeyPair:
    """Issues ``<stem>.crt`` / ``<stem>.key``: a serving certificate or a client one.

    A client certificate's CN is the Kubernetes user name and its O entries
    are the user's groups.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    certificate = builder.sign(authority.private_key, hashes.SHA256())
    files = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    files.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key, key)
    return files


def create_service_account_key(directory: Path) -> Path:
    """Creates ``sa.key``, the RSA key that signs and verifies service-account tokens."""
    path = directory / "sa.key"
    _write_key(path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return path
