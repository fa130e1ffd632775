"""The broker's TLS material, generated with ``cryptography``: a project CA and certificates.

Files under ``<state_dir>/tls`` (keys mode 0600): ``ca.crt``/``ca.key`` (the project CA,
created once), ``server.crt``/``server.key`` (for Mosquitto's TLS listener; SANs localhost,
127.0.0.1, the MQTT host and ``security.tls_server_names``; re-issued when the names change
or expiry is < 30 days away) and, with client-certificate auth, ``crl.pem`` (revoked device
certificates). ``issue_client`` makes a device certificate whose CN is the device id, which
Mosquitto then uses as the username (``use_identity_as_username``).

Example:
    >>> from citywatch.settings import Settings
    >>> tls = BrokerTls(Settings(state_dir=Path("/tmp/cw-doc")))
    >>> tls.ca_cert.name
    'ca.crt'
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citywatch.settings import Settings

_RENEW_BEFORE = timedelta(days=30)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class BrokerTls:
    """Creates and renews the CA, the server certificate, device certificates and the CRL."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = settings.state_dir / "tls"

    ca_cert = property(lambda self: self.dir / "ca.crt")
    ca_key = property(lambda self: self.dir / "ca.key")
    server_cert = property(lambda self: self.dir / "server.crt")
    server_key = property(lambda self: self.dir / "server.key")
    crl = property(lambda self: self.dir / "crl.pem")

    def server_names(self) -> list[str]:
        names = ["localhost", "127.0.0.1", self.s.mqtt.host, *self.s.security.tls_server_names]
        return list(dict.fromkeys(names))

    def ensure(self) -> None:
        """CA, server certificate and CRL exist and are current (idempotent)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.ca_cert.exists() and self.ca_key.exists()):
            self._make_ca()
        if self._server_stale():
            self._make_server()
        if not self.crl.exists():
            self.write_crl([])

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "citywatch local CA")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.ca_key, _key_pem(key))
        self.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _leaf(self, cn: str, key: ec.EllipticCurvePrivateKey, *, server: bool) -> x509.Certificate:
        ca, ca_key = self._load_ca()
        now = datetime.now(UTC)
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=self.s.security.tls_cert_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if server:
            b = b.add_extension(
                x509.SubjectAlternativeName([_san(n) for n in self.server_names()]), False
            )
        return b.sign(ca_key, hashes.SHA256())

    def _server_stale(self) -> bool:
        if not (self.server_cert.exists() and self.server_key.exists()):
            return True
        cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        if cert.not_valid_after_utc - datetime.now(UTC) < _RENEW_BEFORE:
            return True
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        return have != set(self.server_names())

    def _make_server(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._leaf("citywatch-mosquitto", key, server=True)
        _write_private(self.server_key, _key_pem(key))
        self.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue_client(self, device_id: str) -> tuple[bytes, bytes, int]:
        """A device certificate (CN = device id): (certificate PEM, key PEM, serial)."""
        self.ensure()
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._leaf(device_id, key, server=False)
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), cert.serial_number

    def role_cert(self, role: str) -> tuple[Path, Path]:
        """The certificate of a pipeline role (CN = its MQTT username, e.g. ``gateway``),
        issued once under ``roles/`` and renewed when expiry is < 30 days away."""
        cert_path = self.dir / "roles" / f"{role}.crt"
        key_path = self.dir / "roles" / f"{role}.key"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.not_valid_after_utc - datetime.now(UTC) >= _RENEW_BEFORE:
                return cert_path, key_path
        cert_pem, key_pem, _ = self.issue_client(role)
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(key_path, key_pem)
        cert_path.write_bytes(cert_pem)
        return cert_path, key_path

    def client_context(self, role: str | None = None) -> ssl.SSLContext:
        """A client TLS context trusting the project CA; with ``role``, presenting its
        certificate (for a listener that requires client certificates)."""
        self.ensure()
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        if role is not None:
            cert, key = self.role_cert(role)
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def write_crl(self, revoked_serials: list[int]) -> None:
        """The CRL Mosquitto checks device certificates against (re-read on start)."""
        ca, ca_key = self._load_ca()
        now = datetime.now(UTC)
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + timedelta(days=3650))
        )
        for serial in revoked_serials:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - timedelta(minutes=5))
                .build()
            )
        self.crl.write_bytes(
            b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )
