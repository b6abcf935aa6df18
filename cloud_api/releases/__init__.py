"""Signed releases: manifests per channel, version pins per branch (docs/updates.md)."""

from ._controller import ReleasesController
from ._service import PinBody, ReleaseBody, ReleaseService, RolloutBody
from ._sign import load_private_key, new_key, public_key_b64, sign_artifact

__all__ = [
    "PinBody",
    "ReleaseBody",
    "ReleaseService",
    "ReleasesController",
    "RolloutBody",
    "load_private_key",
    "new_key",
    "public_key_b64",
    "sign_artifact",
]
