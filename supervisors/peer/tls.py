"""Mutual TLS for peer links, with only the cluster CA trusted, and who-is-this from the certificate's SAN.

Python's ssl does not do mTLS by default: a server context must be told ``CERT_REQUIRED``, and a server
never checks the client's name, so :func:`identify` maps the client certificate's DNS SANs to exactly one
topology node. ``load_default_certs`` is never called: the system store must not vouch for a peer.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from supervisors.peer.config import SAN_SUFFIX


class PeerRefused(Exception):
    """A peer's certificate is valid but does not name exactly one node we link with."""

    def __init__(self, reason: str, names: list[str]) -> None:
        super().__init__(f"peer refused: {reason} (presented {names}); issue it a certificate for its node")
        self.reason = reason
        self.names = names


def _harden(ctx: ssl.SSLContext, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx


def server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_verify_locations(cafile=str(ca))  # the cluster CA only
    return _harden(ctx, ca, cert, key)


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    # With cafile given, create_default_context loads that CA and not the system store; check_hostname
    # stays on, so the server must present the SAN we dial (``server_hostname=<peer>.garrison``).
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    return _harden(ctx, ca, cert, key)


def dns_names(peercert: Mapping[str, Any] | None) -> list[str]:
    """The DNS SANs of a verified peer certificate (``SSLObject.getpeercert()``)."""
    if not peercert:
        return []
    return [value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS"]


def identify(names: Iterable[str], nodes: Iterable[str], me: str) -> str:
    """The one node among ``nodes`` (not ``me``) that the SANs ``names`` name, else PeerRefused.

    Other SANs (localhost, IPs) may be present; naming two topology nodes is refused, since such a
    certificate could speak for either.
    """
    names = list(names)
    # DNS names compare case-insensitively; the topology forbids node names that differ only in case
    candidates = {n.lower(): n for n in (*nodes, me)}
    named = {n.lower()[: -len(SAN_SUFFIX)] for n in names if n.lower().endswith(SAN_SUFFIX)}
    matched = sorted(candidates[n] for n in named if n in candidates)
    if not matched:
        raise PeerRefused("certificate names no node of the topology", names)
    if len(matched) > 1:
        raise PeerRefused(f"certificate names several nodes {matched}", names)
    if matched[0] == me:
        raise PeerRefused("certificate names this node itself", names)
    return matched[0]
