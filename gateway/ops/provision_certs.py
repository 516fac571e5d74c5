"""Site CA, broker server cert and per-node client certs (CN = node id) for mosquitto TLS, via `cryptography`.

Files: ca.crt/ca.key, broker.crt/broker.key (SAN = broker host), gateway-client.crt/.key (CN = gateway
user), nodes/<node>.crt/.key. With mosquitto
`require_certificate true` + `use_identity_as_username true` the CN is the ACL user (= node id).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def save_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key as unencrypted PKCS8 PEM, readable by its owner only."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"provision: {key_path} is not an EC key")
    return cert, key


def _name(cn: str, site: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"fogline {site}"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: x509.Name, issuer: x509.Name, pub, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days)))


def make_ca(site: str, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Self-signed site CA (P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"fogline {site} site CA", site)
    cert = (_builder(name, name, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str, site: str, days: int,
          server_host: str | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Leaf cert signed by the CA: a client cert (CN = node id) or, with server_host, a server cert."""
    key = ec.generate_private_key(ec.SECP256R1())
    b = (_builder(_name(cn, site), ca.subject, key.public_key(), days)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if server_host:
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(server_host))
        except ValueError:
            san = x509.DNSName(server_host)
        b = b.add_extension(x509.SubjectAlternativeName([san]), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def _ensure_leaf(d: Path, stem: str, ca, ca_key, site: str, days: int, renew: bool,
                 server_host: str | None = None, cn: str | None = None) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    crt, key = d / f"{stem}.crt", d / f"{stem}.key"
    if renew or not (crt.exists() and key.exists()):
        cert, k = issue(ca, ca_key, cn or stem, site, days, server_host)
        save_key(key, k)
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {f"cert:{stem}": crt, f"key:{stem}": key}


def ensure(d: Path, site: str, nodes: list[str], *, rotate_nodes: list[str], rotate_ca: bool,
           broker_host: str, days: int, gateway_user: str = "gateway") -> dict[str, Path]:
    """Create missing certs (kept across runs); a new CA reissues every leaf."""
    d.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key_p = d / "ca.crt", d / "ca.key"
    new_ca = rotate_ca or not (ca_crt.exists() and ca_key_p.exists())
    if new_ca:
        ca, ca_key = make_ca(site, days)
        save_key(ca_key_p, ca_key)
        ca_crt.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    else:
        ca, ca_key = _load(ca_crt, ca_key_p)
    files = {"ca": ca_crt}
    files.update(_ensure_leaf(d, "broker", ca, ca_key, site, days, new_ca, server_host=broker_host))
    files.update(_ensure_leaf(d, "gateway-client", ca, ca_key, site, days, new_ca or bool(rotate_nodes),
                              cn=gateway_user))
    for n in nodes:
        files.update(_ensure_leaf(d / "nodes", n, ca, ca_key, site, days, new_ca or n in rotate_nodes))
    return files
