"""Ed25519 keys of a node: each committed incident entry is signed by the node that proposed it.

A node's private key lives in ``<data_dir>/keys/<node>.ed25519`` (raw 32 bytes, mode 0600), created on
first use. Public keys are shared as base64 (``garrison`` prints them; the topology lists them per node).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def key_path(data_dir: str | Path, node: str) -> Path:
    return Path(data_dir) / "keys" / f"{node}.ed25519"


def load_or_create_signing_key(data_dir: str | Path, node: str) -> Ed25519PrivateKey:
    path = key_path(data_dir, node)
    if path.exists():
        raw = path.read_bytes()
        if len(raw) != 32:
            raise ValueError(f"{path}: expected a raw 32-byte Ed25519 private key, found {len(raw)} bytes")
        return Ed25519PrivateKey.from_private_bytes(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes_raw())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def parse_public_key(b64: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))
    except ValueError as exc:
        raise ValueError(f"not a base64 raw Ed25519 public key: {b64!r} ({exc})") from exc


def verify(public: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True
