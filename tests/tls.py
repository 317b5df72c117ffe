"""Certificates for tests that talk TLS to a real server: a CA of the test's own and server
certificates it signs, written as PEM files, since redis-server and the clients read files.

Made with the `cryptography` package in-process (no `openssl` subprocess); each test makes its
own, so a test about a wrong CA simply makes a second one.
"""

import datetime
import ipaddress
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=1)


class Authority(NamedTuple):
    """A CA: its certificate (as a file, for clients to trust) and its key, to sign with."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    path: Path


class ServerFiles(NamedTuple):
    """What a TLS server is started with: its certificate and key, and the CA that signed it."""

    cert_path: Path
    key_path: Path
    ca_path: Path


def make_ca(directory, name="PipelineHub test CA"):
    """A self-signed CA, its certificate written to `<directory>/<name>.crt`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    certificate = (
        _builder(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = Path(directory) / f"{name.replace(' ', '-')}.crt"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Authority(certificate, key, path)


def make_server_cert(ca, directory, san=("127.0.0.1",), name="redis", validity=VALIDITY):
    """A server certificate signed by `ca`, valid for the names and IP addresses of `san` only
    (a client verifying host names refuses any other) for `validity` from now, with its key, as
    PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        _builder(_name(name), ca.certificate.subject, key.public_key(), validity)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = Path(directory) / f"{name}.crt", Path(directory) / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ServerFiles(cert_path, key_path, ca.path)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject, issuer, public_key, validity=VALIDITY):
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
    )


def _key_usage(cert_sign):
    """A CA signs certificates; a server signs its handshakes (ECDSA: digital signature)."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(value):
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)
