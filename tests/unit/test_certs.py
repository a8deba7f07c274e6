"""Cluster certificates: what `garrison certs init/issue` write, and that real TLS stacks accept them.

The proof is not the fields we set but their effect: `openssl verify -x509_strict` accepts the chain, and
a Python server and client over loopback complete a mutual-TLS handshake with CERT_REQUIRED and
VERIFY_X509_STRICT using only these files (while a certificate from another CA is refused).
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from supervisors.certs import (
    CertError,
    CertExists,
    ensure_cluster_certs,
    init_ca,
    issue_node_cert,
    node_files,
)
from supervisors.cli import main


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_writes_a_strict_ca_with_private_files(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    result = CliRunner().invoke(main, ["certs", "init", str(certs)])
    assert result.exit_code == 0, result.output
    assert _mode(certs) == 0o700
    assert _mode(certs / "ca.key") == 0o600
    ca = _cert(certs / "ca.pem")
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)  # raises if missing
    assert ca.subject == ca.issuer


def test_issue_writes_a_node_cert_with_both_usages_and_the_names(tmp_path: Path) -> None:
    init_ca(tmp_path)
    result = CliRunner().invoke(
        main, ["certs", "issue", str(tmp_path), "gw-1", "--san", "gw1.example.org", "--san", "10.0.0.7"]
    )
    assert result.exit_code == 0, result.output
    files = node_files(tmp_path, "gw-1")
    assert _mode(files.key) == 0o600
    cert, ca = _cert(files.cert), _cert(files.ca)
    assert cert.issuer == ca.subject
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"gw-1.garrison", "localhost", "gw1.example.org"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.7"),
    }
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 300 < lifetime.days < 900


def test_existing_keys_are_not_replaced_without_force(tmp_path: Path) -> None:
    init_ca(tmp_path)
    issue_node_cert(tmp_path, "gw-1")
    ca_key = (tmp_path / "ca.key").read_bytes()
    node_key = (tmp_path / "gw-1.key").read_bytes()

    again = CliRunner().invoke(main, ["certs", "init", str(tmp_path)])
    assert again.exit_code == 1 and "--force" in again.output
    with pytest.raises(CertExists, match="--force"):
        issue_node_cert(tmp_path, "gw-1")
    assert (tmp_path / "ca.key").read_bytes() == ca_key
    assert (tmp_path / "gw-1.key").read_bytes() == node_key

    issue_node_cert(tmp_path, "gw-1", force=True)
    assert (tmp_path / "gw-1.key").read_bytes() != node_key
    assert _mode(tmp_path / "gw-1.key") == 0o600
    init_ca(tmp_path, force=True)
    assert (tmp_path / "ca.key").read_bytes() != ca_key


def test_requests_that_cannot_work_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="garrison certs init"):
        issue_node_cert(tmp_path / "nothing-here", "gw-1")
    init_ca(tmp_path)
    with pytest.raises(CertError, match="'ca'"):
        issue_node_cert(tmp_path, "ca")
    with pytest.raises(CertError, match="node name"):
        issue_node_cert(tmp_path, "../evil")
    with pytest.raises(CertError, match="--san"):
        issue_node_cert(tmp_path, "gw-1", sans=["not a name!"])
    # the CA's key replaced by another key: issuing would make certs nobody trusts
    other = tmp_path / "other"
    init_ca(other)
    shutil.copy(other / "ca.key", tmp_path / "ca.key")
    with pytest.raises(CertError, match="do not belong together"):
        issue_node_cert(tmp_path, "gw-1")


def test_ensure_creates_only_what_is_missing(tmp_path: Path) -> None:
    created = ensure_cluster_certs(tmp_path, ["a", "b"])
    assert {p.name for p in created} == {"ca.pem", "ca.key", "a.pem", "a.key", "b.pem", "b.key"}
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert ensure_cluster_certs(tmp_path, ["a", "b"]) == []
    created = ensure_cluster_certs(tmp_path, ["a", "b", "c"])
    assert {p.name for p in created} == {"c.pem", "c.key"}
    assert all((tmp_path / name).read_bytes() == data for name, data in before.items())
    (tmp_path / "b.key").unlink()
    with pytest.raises(CertError, match="--force"):
        ensure_cluster_certs(tmp_path, ["a", "b"])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_the_chain_strictly(tmp_path: Path) -> None:
    init_ca(tmp_path)
    files = issue_node_cert(tmp_path, "gw-1")
    for purpose in ("sslserver", "sslclient"):
        cmd = ["openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(files.ca)]
        done = subprocess.run([*cmd, str(files.cert)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and ": OK" in done.stdout, done.stdout + done.stderr
    # the check can fail: a cert from another CA is refused by the same command
    other = tmp_path / "other"
    init_ca(other)
    stranger = issue_node_cert(other, "gw-1")
    done = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(files.ca), str(stranger.cert)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0


def _server_context(files: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_verify_locations(cafile=str(files.ca))  # only the cluster CA, never the system store
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def _client_context(ca: Path, files: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_name: str) -> dict[str, Any]:
    """One mutual-TLS handshake over loopback; the server's view of the client, or the client's error."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: dict[str, Any] = {}

    def serve() -> None:
        listener.settimeout(10)
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            seen["server_error"] = exc
            return
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["client_cert"] = tls.getpeercert()
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            seen["server_error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            seen["reply"] = tls.recv(2)
            seen["server_cert"] = tls.getpeercert()
    except (ssl.SSLError, OSError) as exc:
        seen["client_error"] = exc
    finally:
        thread.join(timeout=15)
        listener.close()
    return seen


def test_python_ssl_mutual_tls_handshake_with_strict_verification(tmp_path: Path) -> None:
    init_ca(tmp_path)
    server = issue_node_cert(tmp_path, "gw-1")
    client = issue_node_cert(tmp_path, "edge-1")
    for name in ("gw-1.garrison", "127.0.0.1", "localhost"):
        seen = _handshake(_server_context(server), _client_context(server.ca, client), name)
        assert seen.get("reply") == b"ok", seen
        # the server saw the client's certificate (mutual TLS), which names the client node
        assert ("DNS", "edge-1.garrison") in seen["client_cert"]["subjectAltName"]
        assert ("DNS", "gw-1.garrison") in seen["server_cert"]["subjectAltName"]

    # the checks really bite: a wrong name, a client from another CA, and a client without a cert fail
    wrong = _handshake(_server_context(server), _client_context(server.ca, client), "gw-2.garrison")
    assert "client_error" in wrong and "reply" not in wrong
    other = tmp_path / "other"
    init_ca(other)
    stranger = issue_node_cert(other, "edge-1")
    refused = _handshake(_server_context(server), _client_context(server.ca, stranger), "gw-1.garrison")
    assert "server_error" in refused and "client_cert" not in refused
    anonymous = ssl.create_default_context(cafile=str(server.ca))
    refused = _handshake(_server_context(server), anonymous, "gw-1.garrison")
    assert "server_error" in refused and "client_cert" not in refused
