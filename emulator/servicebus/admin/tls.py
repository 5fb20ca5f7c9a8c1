"""A throw-away certificate authority and server certificate for the admin API's HTTPS.

``ServiceBusAdministrationClient`` only speaks HTTPS. Each emulator generates a fresh CA and a
server certificate for localhost / 127.0.0.1 / ::1 (plus the host it listens on), and writes
the CA bundle to disk so clients can verify properly instead of ``connection_verify=False``.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class TlsMaterial:
    directory: Path
    ca_bundle: Path
    certificate: Path
    private_key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.private_key)
        return context

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def move_to(self, directory: Path) -> TlsMaterial:
        """Move the files (already loaded into contexts) to their published place."""
        directory = Path(directory)
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
        directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory), str(directory))
        return TlsMaterial(
            directory=directory,
            ca_bundle=directory / self.ca_bundle.name,
            certificate=directory / self.certificate.name,
            private_key=directory / self.private_key.name,
        )


def default_directory(port: int) -> Path:
    """``<tempdir>/sbemu-<port>``: predictable, so a harness can find the CA bundle."""
    return Path(tempfile.gettempdir()) / f"sbemu-{port}"


def staging_directory() -> Path:
    """A private directory to generate into before the port (and so the final path) is known."""
    return Path(tempfile.mkdtemp(prefix="sbemu-tls-"))


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def generate(directory: Path, host: str) -> TlsMaterial:
    """Create the CA and server certificate under ``directory`` (replacing older ones)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=365)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sbemu local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    hosts = ["localhost", "127.0.0.1", "::1"]
    if host not in ("0.0.0.0", "::", ""):
        hosts.append(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    material = TlsMaterial(
        directory=directory,
        ca_bundle=directory / "ca.pem",
        certificate=directory / "server.pem",
        private_key=directory / "server-key.pem",
    )
    material.ca_bundle.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    material.certificate.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    material.private_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    material.private_key.chmod(0o600)
    return material
