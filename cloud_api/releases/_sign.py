"""Release signing, on the build machine (never in the API): an Ed25519 key pair, and the
manifest fields of one artifact signed with it."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import ReleaseManifest, release_signed_bytes


def new_key() -> tuple[bytes, str]:
    """A new private key (PEM, keep it offline) and its public key (base64, for agents)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, public_key_b64(key)


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def sign_artifact(
    key: Ed25519PrivateKey, artifact: Path, *, channel: str, version: str
) -> ReleaseManifest:
    """The signed manifest of ``artifact`` (a wheel) for ``channel`` (100 % rollout)."""
    sha256 = hashlib.sha256(artifact.read_bytes()).hexdigest()
    signed = release_signed_bytes(
        channel=channel, version=version, artifact=artifact.name, sha256=sha256
    )
    return ReleaseManifest(
        channel=channel,
        version=version,
        artifact=artifact.name,
        sha256=sha256,
        signature=base64.b64encode(key.sign(signed)).decode(),
    )
