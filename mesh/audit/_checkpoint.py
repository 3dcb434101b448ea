"""Signed checkpoints and the mesh's checkpoint signing key (Ed25519).

A checkpoint says "record `seq` has hash `head`", signed by the mesh's key: whoever holds the
public key can check that every record up to `seq` is the one that was written — a rewrite of
the chain behind it (even one that recomputes every hash) no longer matches, and a copy of a
checkpoint kept off the mesh shows a tail cut off after it.

The key lives in ``<state>/audit/signing.key`` (PKCS#8 PEM, mode 600 in a 700 folder, created
once by `ensure_signing_key` like the other credentials of a mesh, read by path — never an
argument, never logged); ``signing.pub`` beside it is the public half to hand out.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mesh.audit._errors import SigningKeyError, Unreadable
from mesh.audit._record import FORMAT_VERSION, canonical

SIGNING_KEY_FILE = "signing.key"
PUBLIC_KEY_FILE = "signing.pub"
# Signatures over checkpoints are over this prefix and the canonical body: a signature made for
# something else with the same key can never pass for a checkpoint.
_DOMAIN = b"tidemesh-audit-checkpoint/1\n"


@dataclass(frozen=True)
class Checkpoint:
    """Record `seq` (and so every record before it) has hash `head`, as signed by `key_id`."""

    seq: int
    head: str
    time: str
    key_id: str
    signature: str = ""  # base64 of the Ed25519 signature over `signed_bytes`

    def signed_bytes(self) -> bytes:
        body = {
            "type": "checkpoint",
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "head": self.head,
            "time": self.time,
            "key_id": self.key_id,
        }
        return _DOMAIN + canonical(body)

    def verifies(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(base64.b64decode(self.signature, validate=True), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "checkpoint",
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "head": self.head,
            "time": self.time,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def encode(self) -> bytes:
        return canonical(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Checkpoint:
        if doc.get("type") != "checkpoint":
            raise Unreadable("type: not 'checkpoint'")
        seq = doc.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise Unreadable("seq: not a count")
        fields = {}
        for key in ("head", "time", "key_id", "signature"):
            value = doc.get(key, "")
            if not isinstance(value, str):
                raise Unreadable(f"{key}: not a string")
            fields[key] = value
        return cls(seq, **fields)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """A short name of a public key: the first 16 hex digits of sha256 over its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from its PEM; `SigningKeyError` if it is not one."""
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise SigningKeyError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"not an Ed25519 public key (a {type(key).__name__})")
    return key


class Signer:
    """Signs checkpoints with the mesh's private key (its repr never shows the key)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    @classmethod
    def load(cls, path: Path) -> Signer:
        """The key at `path`; refuses a file other users could read, or one that is not an Ed25519 key."""
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise SigningKeyError(f"no audit signing key at {path} (tidemesh up creates one)") from None
        if mode & 0o077:
            raise SigningKeyError(f"{path} is readable by others (mode {mode & 0o777:o}); it must be 600")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError:
            raise SigningKeyError(f"{path} is not a PEM private key") from None  # its text stays out
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{path} is not an Ed25519 key")
        return cls(key)

    @property
    def public_pem(self) -> str:
        return public_key_pem(self.public_key)

    def sign(self, seq: int, head: str, time: str) -> Checkpoint:
        unsigned = Checkpoint(seq, head, time, self.key_id)
        signature = base64.b64encode(self._key.sign(unsigned.signed_bytes())).decode()
        return Checkpoint(seq, head, time, self.key_id, signature)


def ensure_signing_key(directory: Path) -> Path:
    """``<directory>/signing.key`` (600, the folder 700) and ``signing.pub``, made once and kept;
    returns the folder. Written in full under a private name, then linked into place: two
    starters racing keep one key, and no reader sees half a file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    path = directory / SIGNING_KEY_FILE
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _create_once(path, pem, 0o600)
    signer = Signer.load(path)  # usable and private, or fail at start
    public = directory / PUBLIC_KEY_FILE
    if not public.exists() or public.read_text() != signer.public_pem:
        _create_once(public, signer.public_pem.encode(), 0o644, replace=True)
    return directory


def _create_once(path: Path, data: bytes, mode: int, replace: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # whatever the umask took away
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):  # another starter won: its key stays
                os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
