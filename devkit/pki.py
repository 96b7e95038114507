"""Certificates for the local control plane, generated fresh for each one.

A CA, the apiserver's serving certificate, an admin client certificate and the service-account signing key.

Kept apart from :mod:`devkit.cluster` so that unit tests needing a certificate import no process code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devkit.loopback import LOOPBACK


@dataclasses.dataclass(frozen=True)
class Credentials:
    """PEM material for the cluster CA and the admin client certificate."""

    ca_cert: bytes
    admin_cert: bytes
    admin_key: bytes


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    is_ca: bool,
    extensions: list[x509.ExtensionType],
) -> x509.Certificate:
    now = dt.datetime.now(tz=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    for ext in extensions:
        builder = builder.add_extension(ext, critical=isinstance(ext, x509.KeyUsage))
    return builder.sign(issuer_key, hashes.SHA256())


_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def _issued(
    ca: tuple[x509.Name, ec.EllipticCurvePrivateKey], subject: x509.Name, extensions: list[x509.ExtensionType]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh P-256 key and a leaf certificate for it, signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(
        subject=subject,
        public_key=key.public_key(),
        issuer=ca[0],
        issuer_key=ca[1],
        is_ca=False,
        extensions=extensions,
    )
    return cert, key


def _self_signed_ca(common_name: str) -> tuple[x509.Certificate, x509.Name, ec.EllipticCurvePrivateKey]:
    """A fresh P-256 CA: its certificate, name and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name((NameOID.COMMON_NAME, common_name))
    cert = _cert(
        subject=name, public_key=key.public_key(), issuer=name, issuer_key=key, is_ca=True, extensions=[_CA_USAGE]
    )
    return cert, name, key


def _write_private(directory: Path, files: dict[str, bytes]) -> None:
    """Write each file readable by its owner only (keys among them)."""
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)


def write_pki(pki: Path) -> Credentials:
    """Generate the CA, serving cert, admin client cert and service-account key pair into ``pki``.

    EC P-256 for certificates (fast to generate); RSA 2048 for service-account tokens (RS256, the
    algorithm every token consumer accepts).
    """
    pki.mkdir(parents=True, exist_ok=True)
    ca, ca_name, ca_key = _self_signed_ca("ccr-test-ca")
    serving, serving_key = _issued(
        (ca_name, ca_key),
        _name((NameOID.COMMON_NAME, "kube-apiserver")),
        [
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address(LOOPBACK)), x509.DNSName("localhost")]),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        ],
    )
    admin, admin_key = _issued(
        (ca_name, ca_key),
        _name((NameOID.ORGANIZATION_NAME, "system:masters"), (NameOID.COMMON_NAME, "admin")),
        [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])],
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = serialization.Encoding.PEM
    files = {
        "ca.crt": ca.public_bytes(pem),
        "serving.crt": serving.public_bytes(pem),
        "serving.key": _pem_key(serving_key),
        "admin.crt": admin.public_bytes(pem),
        "admin.key": _pem_key(admin_key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    _write_private(pki, files)
    return Credentials(ca_cert=files["ca.crt"], admin_cert=files["admin.crt"], admin_key=files["admin.key"])


def write_loopback_server(directory: Path, common_name: str) -> bytes:
    """Generate a throwaway CA and a serving certificate for ``127.0.0.1`` signed by it; return the CA's PEM.

    Writes ``server.crt`` and ``server.key`` (0600) into ``directory``. A program that sits between a client
    and a real server (the fault proxy) presents this, and the client's kubeconfig trusts this CA instead of
    the cluster's: nothing of the cluster's own PKI needs to leave the control plane.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_name, ca_key = _self_signed_ca(f"{common_name}-ca")
    serving, serving_key = _issued(
        (ca_name, ca_key),
        _name((NameOID.COMMON_NAME, common_name)),
        [
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address(LOOPBACK))]),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        ],
    )
    _write_private(
        directory, {"server.crt": serving.public_bytes(serialization.Encoding.PEM), "server.key": _pem_key(serving_key)}
    )
    return ca.public_bytes(serialization.Encoding.PEM)
