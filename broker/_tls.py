"""A development/demo certificate authority and the broker's server certificate.

:func:`ensure_tls_material` keeps, in one directory, a CA (``ca.pem``/``ca.key``) and a server
certificate signed by it (``server.pem``/``server.key``) for Mosquitto's TLS and WebSockets+TLS
listeners. Agents trust the CA, whose PEM text the provisioning API hands them.

It is idempotent: material that is still valid (and, for the server certificate, still names
every requested host) is reused. The CA is replaced only when it is missing, unreadable or about
to expire, because a new CA breaks every agent that trusts the old one; the server certificate is
re-issued whenever it no longer fits. Production brokers with a public name should use a real
certificate instead (Let's Encrypt: see ``/usr/share/doc/mosquitto/README-letsencrypt.md``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._errors import BrokerError

#: Names every server certificate carries, so a broker on this machine verifies as itself.
DEFAULT_HOSTNAMES: tuple[str, ...] = ("localhost",)
DEFAULT_IP_ADDRESSES: tuple[str, ...] = ("127.0.0.1", "::1")

CA_VALIDITY = dt.timedelta(days=5 * 365)
#: Browsers cap server certificates at 398 days; we follow although MQTT clients do not care.
SERVER_VALIDITY = dt.timedelta(days=397)
#: Material expiring within this margin is replaced now rather than failing in the field.
RENEW_BEFORE = dt.timedelta(days=30)
#: Tolerance for clocks that run slightly behind ours.
_BACKDATE = dt.timedelta(minutes=5)

_Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of the CA and server certificate/key, and the CA certificate as PEM text."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    ca_pem: str


def ensure_tls_material(
    directory: os.PathLike[str] | str,
    *,
    hostnames: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> TlsMaterial:
    """Create, or reuse when still valid, a CA and a server certificate in ``directory``.

    The server certificate names ``localhost``, ``127.0.0.1`` and ``::1`` plus ``hostnames``
    and ``ip_addresses``. Private keys are written with mode 0600. ``now`` is for tests.
    """
    now = now or dt.datetime.now(dt.UTC)
    dns_names = _unique([*DEFAULT_HOSTNAMES, *hostnames])
    try:
        ips = _unique([ipaddress.ip_address(ip) for ip in (*DEFAULT_IP_ADDRESSES, *ip_addresses)])
    except ValueError as exc:
        raise BrokerError(f"TLS: {exc}") from exc
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = TlsMaterial(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        ca_pem="",
    )

    ca = _load_pair(paths.ca_cert, paths.ca_key)
    if ca is None or not _ca_usable(ca[0], now):
        ca = _new_ca(now)
        _write_pair(paths.ca_cert, paths.ca_key, *ca)
    ca_cert, ca_key = ca

    server = _load_pair(paths.server_cert, paths.server_key)
    if server is None or not _server_usable(server[0], ca_cert, dns_names, ips, now):
        server = _new_server_cert(ca_cert, ca_key, dns_names, ips, now)
        _write_pair(paths.server_cert, paths.server_key, *server)

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return TlsMaterial(
        ca_cert=paths.ca_cert,
        ca_key=paths.ca_key,
        server_cert=paths.server_cert,
        server_key=paths.server_key,
        ca_pem=ca_pem,
    )


def _unique(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, _Key] | None:
    """The certificate and its private key, or None when missing, unreadable or mismatched."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if _public_der(key) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return None
    return cert, key


def _public_der(key: _Key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _valid_at(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _ca_usable(cert: x509.Certificate, now: dt.datetime) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca and _valid_at(cert, now)


def _server_usable(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    dns_names: list[str],
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: dt.datetime,
) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    # The certificate must also expire before the CA, or a valid chain could not be built.
    return (
        set(dns_names) <= have_dns
        and set(ips) <= have_ips
        and _valid_at(cert, now)
        and cert.not_valid_after_utc <= ca_cert.not_valid_after_utc
    )


def _new_key() -> _Key:
    return ec.generate_private_key(ec.SECP256R1())


def _new_ca(now: dt.datetime) -> tuple[x509.Certificate, _Key]:
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PrinterMaster"),
            x509.NameAttribute(NameOID.COMMON_NAME, "PrinterMaster development CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server_cert(
    ca_cert: x509.Certificate,
    ca_key: _Key,
    dns_names: list[str],
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: dt.datetime,
) -> tuple[x509.Certificate, _Key]:
    key = _new_key()
    not_after = min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PrinterMaster"),
                    x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0]),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.DNSName(n) for n in dns_names), *(x509.IPAddress(ip) for ip in ips)]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate, key: _Key) -> None:
    """Key first, then certificate, each replaced atomically; a key is never world-readable."""
    _write_atomic(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask and ignored for old files
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, path)
