"""Certificates of a cluster: one private CA per cluster, one key + certificate per node.

    garrison certs init DIR                       # DIR/ca.pem, DIR/ca.key (0600), DIR itself 0700
    garrison certs issue DIR NODE [--san X ...]   # DIR/NODE.pem, DIR/NODE.key (0600), signed by DIR's CA

The same files serve the peer links (mutual TLS between nodes: every node certificate carries both the
serverAuth and clientAuth usages, because each node dials and accepts) and MQTT brokers that require
client certificates (``tls: {ca_certs: DIR/ca.pem, certfile: DIR/NODE.pem, keyfile: DIR/NODE.key}``).

The certificates are built to pass OpenSSL's strict verification (``VERIFY_X509_STRICT``, the default of
Python 3.13's ``create_default_context``): the CA has a critical ``BasicConstraints(ca=True)``, a critical
``KeyUsage`` (certificate and CRL signing) and a subject key id; a node certificate names its issuer's key
(authority key id), is not a CA, and lists its names as SANs (``NODE.garrison``, ``localhost``,
``127.0.0.1`` and any ``--san``): TLS clients check SANs, never the common name.

Keys are EC P-256 (small, fast handshakes, accepted by every TLS stack including mosquitto's), written
unencrypted in PKCS#8 with mode 0600 from the first byte (``O_CREAT`` with 0600, never chmod after).
Existing keys are never replaced unless asked (``force``): replacing a CA key silently would make every
node certificate already handed out untrusted.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CertError",
    "CertExists",
    "NodeFiles",
    "ensure_cluster_certs",
    "init_ca",
    "issue_node_cert",
    "node_files",
    "node_san",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CA_DAYS = 3650
NODE_DAYS = 825  # a little over two years: long enough for a fleet, short enough to be renewed on purpose
_CLOCK_SKEW = datetime.timedelta(minutes=5)  # a node whose clock is a little behind still accepts a new cert
_NODE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")  # the topology's node names, within one DNS label's length


class CertError(Exception):
    """A certificate directory is unusable or a request is invalid; the message says what to do."""


class CertExists(CertError):
    """A key or certificate is already there and ``force`` was not given."""


@dataclass(frozen=True, slots=True)
class NodeFiles:
    """The three files a node presents and trusts."""

    ca: Path
    cert: Path
    key: Path


def node_san(node: str) -> str:
    """The DNS name a node's certificate carries and a peer checks: ``<node>.garrison``."""
    return f"{node.lower()}.garrison"


def node_files(certs_dir: str | Path, node: str) -> NodeFiles:
    d = Path(certs_dir)
    return NodeFiles(ca=d / CA_CERT, cert=d / f"{node}.pem", key=d / f"{node}.key")


# -- writing files ------------------------------------------------------------------------------------


def _prepare_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # owner-only whatever the umask or an older mkdir left: the directory holds private keys
    os.chmod(directory, 0o700)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` from creation (a key is never readable by others,
    not even for the instant between create and chmod)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def _refuse_existing(paths: Iterable[Path], force: bool, what: str) -> None:
    present = [p for p in paths if p.exists() or p.is_symlink()]
    if present and not force:
        names = ", ".join(str(p) for p in present)
        raise CertExists(f"{names} already exist(s); {what}, or pass --force to replace it")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- the CA -------------------------------------------------------------------------------------------


def init_ca(certs_dir: str | Path, *, force: bool = False, days: int = CA_DAYS) -> Path:
    """Create a new cluster CA in ``certs_dir``; returns the CA certificate's path."""
    if days < 1:
        raise CertError(f"--days must be at least 1, not {days}")
    directory = Path(certs_dir)
    ca_cert_path, ca_key_path = directory / CA_CERT, directory / CA_KEY
    _refuse_existing(
        [ca_cert_path, ca_key_path],
        force,
        "keep the existing CA (every node certificate it issued depends on it)",
    )
    _prepare_dir(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    # a random suffix: two clusters' CAs never share a name, so a cert of one is never looked up in the other
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"garrison cluster CA {secrets.token_hex(4)}")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
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
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(ca_key_path, _key_pem(key), 0o600)  # the key first: a cert without its key is useless anyway
    _write(ca_cert_path, _cert_pem(cert), 0o644)
    return ca_cert_path


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.exists() or not key_path.exists():
        raise CertError(
            f"{directory}: no CA here ({CA_CERT} and {CA_KEY} are needed); run `garrison certs init {directory}` first"
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise CertError(
            f"{directory}: cannot read the CA ({exc}); restore {CA_CERT}/{CA_KEY} or make a new CA with --force"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(
            f"{key_path}: not an EC private key; make a new CA with `garrison certs init --force`"
        )
    cert_key = cert.public_key()  # any key type a certificate can hold; the CA's must be this EC key
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or (
        cert_key.public_numbers() != key.public_key().public_numbers()
    ):
        raise CertError(f"{cert_path} and {key_path} do not belong together; restore the pair from one init")
    return cert, key


# -- node certificates --------------------------------------------------------------------------------


def _san_entries(node: str, extra: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in (node_san(node), "localhost", "127.0.0.1", *extra):
        value = raw.strip()
        if not value:
            raise CertError("--san must not be empty")
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})", value) or ".." in value:
                raise CertError(
                    f"--san {value!r}: give a DNS name (letters, digits, '-', '.') or an IP"
                ) from None
            value = value.lower()
            entry = x509.DNSName(value)
        if value not in seen:
            seen.add(value)
            names.append(entry)
    return names


def issue_node_cert(
    certs_dir: str | Path,
    node: str,
    *,
    sans: Sequence[str] = (),
    force: bool = False,
    days: int = NODE_DAYS,
) -> NodeFiles:
    """Create ``NODE.key`` and ``NODE.pem`` signed by the CA in ``certs_dir``; returns the node's files."""
    if not _NODE_NAME.match(node):
        raise CertError(f"node name {node!r}: use 1-63 letters, digits, '_', '.' or '-' (as in the topology)")
    if node.lower() == "ca":
        raise CertError("a node cannot be named 'ca': its files would be the CA's (ca.pem, ca.key)")
    if days < 1:
        raise CertError(f"--days must be at least 1, not {days}")
    directory = Path(certs_dir)
    ca_cert, ca_key = _load_ca(directory)
    files = node_files(directory, node)
    _refuse_existing([files.cert, files.key], force, "keep the node's current certificate")
    san = _san_entries(node, sans)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        # never outlive the CA: a chain with an expired root fails whatever the leaf says
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,  # ECDHE-ECDSA: the key signs the handshake
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
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.key, _key_pem(key), 0o600)
    _write(files.cert, _cert_pem(cert), 0o644)
    return files


def ensure_cluster_certs(certs_dir: str | Path, nodes: Iterable[str]) -> list[Path]:
    """The CA and a certificate for each of ``nodes`` in ``certs_dir``, creating only what is absent
    (``garrison up`` on a fresh checkout); returns the files created. A node whose cert or key exists alone
    is an error: one of the pair was lost, and guessing which to trust is for a person."""
    directory = Path(certs_dir)
    created: list[Path] = []
    if not (directory / CA_CERT).exists() and not (directory / CA_KEY).exists():
        created += [init_ca(directory), directory / CA_KEY]
    for node in nodes:
        files = node_files(directory, node)
        have_cert, have_key = files.cert.exists(), files.key.exists()
        if have_cert and have_key:
            continue
        if have_cert != have_key:
            present, missing = (files.cert, files.key) if have_cert else (files.key, files.cert)
            raise CertError(
                f"{present} exists but {missing} does not; reissue with "
                f"`garrison certs issue {directory} {node} --force`"
            )
        issue_node_cert(directory, node)
        created += [files.cert, files.key]
    return created


# -- the command line ---------------------------------------------------------------------------------


def register(main: click.Group) -> None:
    """Add ``garrison certs init`` and ``garrison certs issue`` to the ``garrison`` command."""

    @main.group()
    def certs() -> None:
        """Cluster certificates: a private CA and a key + certificate per node (mutual TLS, MQTT)."""

    @certs.command(name="init")
    @click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
    @click.option("--force", is_flag=True, help="Replace an existing CA (its node certs stop being trusted).")
    @click.option("--days", type=click.IntRange(min=1), default=CA_DAYS, show_default=True)
    def init_cmd(directory: Path, force: bool, days: int) -> None:
        """Create a cluster CA in DIRECTORY (ca.pem, ca.key 0600; the directory 0700)."""
        try:
            path = init_ca(directory, force=force, days=days)
        except CertError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        click.echo(f"created {path} and {directory / CA_KEY}")

    @certs.command(name="issue")
    @click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
    @click.argument("node")
    @click.option(
        "--san", "sans", multiple=True, help="Extra DNS name or IP in the certificate (repeatable)."
    )
    @click.option("--force", is_flag=True, help="Replace the node's existing key and certificate.")
    @click.option("--days", type=click.IntRange(min=1), default=NODE_DAYS, show_default=True)
    def issue_cmd(directory: Path, node: str, sans: tuple[str, ...], force: bool, days: int) -> None:
        """Issue NODE's key and certificate from the CA in DIRECTORY (NODE.pem, NODE.key 0600).

        The certificate names NODE.garrison, localhost and 127.0.0.1 plus every --san, and is valid for
        both TLS server and client use (nodes dial and accept each other)."""
        try:
            files = issue_node_cert(directory, node, sans=sans, force=force, days=days)
        except CertError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        click.echo(f"created {files.cert} and {files.key} (CA {files.ca})")
