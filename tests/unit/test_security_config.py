"""Device register, broker files and the project's TLS material (no broker needed)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citywatch.security.devices import DeviceError, DeviceRegister
from citywatch.security.tls import BrokerTls
from citywatch.settings import Settings
from citywatch.stack.mosquitto import Mosquitto


def _s(tmp_path: Path, **security: object) -> Settings:
    base = Settings(state_dir=tmp_path, cache_dir=tmp_path / "cache")
    return base.model_copy(update={"security": base.security.model_copy(update=security)})


def test_register_keeps_only_hashes_and_files_are_private(tmp_path: Path) -> None:
    s = _s(tmp_path)
    reg = DeviceRegister(s)
    pw = reg.add("bin-0001")
    assert len(pw) >= 20
    raw = reg.path.read_text()
    assert pw not in raw and "$7$" in raw
    assert stat.S_IMODE(reg.path.stat().st_mode) == 0o600
    m = Mosquitto(s)
    m.write_config()
    passwd = (m.dir / "passwd").read_text()
    assert pw not in passwd
    assert stat.S_IMODE((m.dir / "passwd").stat().st_mode) == 0o600
    users = [line.split(":", 1)[0] for line in passwd.splitlines()]
    assert users == ["gateway", "processor", "simulator", "notifier", "crews", "bin-0001"]
    reg.revoke("bin-0001")
    m.write_config()
    assert "bin-0001" not in (m.dir / "passwd").read_text()


@pytest.mark.parametrize("bad", ["gateway", "influx", "A-caps", "x", "a b", "dev/+/#", "%u"])
def test_bad_or_reserved_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DeviceError):
        DeviceRegister(_s(tmp_path)).add(bad)


def test_default_config_has_only_the_plaintext_loopback_listener(tmp_path: Path) -> None:
    m = Mosquitto(_s(tmp_path))
    m.write_config()
    conf = m.conf_path.read_text()
    assert f"listener {m.s.mqtt.port} 127.0.0.1" in conf
    assert "cafile" not in conf and not (tmp_path / "tls").exists()


def test_tls_listener_config(tmp_path: Path) -> None:
    m = Mosquitto(_s(tmp_path, tls=True))
    m.write_config()
    conf = m.conf_path.read_text()
    assert f"listener {m.s.mqtt.port} 127.0.0.1" in conf
    assert f"listener {m.s.security.tls_port} 127.0.0.1" in conf
    assert f"certfile {tmp_path / 'tls' / 'server.crt'}" in conf
    assert "require_certificate" not in conf


def test_require_tls_and_client_certs_config(tmp_path: Path) -> None:
    m = Mosquitto(_s(tmp_path, require_tls=True, tls_client_certs=True))
    m.write_config()
    conf = m.conf_path.read_text()
    assert f"listener {m.s.mqtt.port} " not in conf  # plaintext off
    assert f"listener {m.s.security.tls_port} 127.0.0.1" in conf
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert f"crlfile {tmp_path / 'tls' / 'crl.pem'}" in conf


def test_certificates(tmp_path: Path) -> None:
    s = _s(tmp_path, tls_server_names=["mqtt.city.example", "10.0.0.5"])
    tls = BrokerTls(s)
    tls.ensure()
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }
    assert names == {"localhost", "127.0.0.1", "mqtt.city.example", "10.0.0.5"}
    assert stat.S_IMODE(tls.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.server_key.stat().st_mode) == 0o600
    # Idempotent: nothing is re-issued while current...
    before = tls.server_cert.read_bytes()
    tls.ensure()
    assert tls.server_cert.read_bytes() == before
    # ...and a changed name list re-issues the server certificate under the same CA.
    BrokerTls(_s(tmp_path)).ensure()
    assert tls.server_cert.read_bytes() != before
    cert_pem, _, serial = tls.issue_client("lamp-0001")
    client = x509.load_pem_x509_certificate(cert_pem)
    client.verify_directly_issued_by(ca)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "lamp-0001"
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert client.not_valid_after_utc > datetime.now(UTC)
    tls.write_crl([serial])
    crl = x509.load_pem_x509_crl(tls.crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]


def test_revoking_a_certificate_device_lists_its_serial(tmp_path: Path) -> None:
    reg = DeviceRegister(_s(tmp_path))
    reg.add("lamp-0002", cert_serial=12345)
    assert reg.revoked_serials() == []
    reg.revoke("lamp-0002")
    assert reg.revoked_serials() == [12345]
