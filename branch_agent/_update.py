"""Signed auto-update: which release to run, and getting it there safely.

The agent reads two retained messages: the manifest of its channel
(:func:`protocol.channel_release_topic`) and its branch's pin
(:func:`protocol.branch_release_topic`). One second after the last of them arrived (both come
right after the subscription; the pin must not lose the race), it decides (:func:`choose`):

* a pinned branch runs the pinned release, whatever the channel says;
* otherwise the channel's release, if the agent falls in its staged rollout: the first
  ``rollout_percent`` of the hundred buckets, an agent's bucket being the SHA-256 of
  ``{branch}/{agent}`` modulo 100 (deterministic: the same agents go first every time);
* never a version the supervisor rolled back (``rejected.json``), nor the one it runs.

Then, in this order: the manifest's Ed25519 signature against the public key of the agent's
config (nothing is downloaded for a forged manifest); the artifact over HTTPS only, from the
configured ``base_url`` (never a URL from the message), with a size limit; its SHA-256 against
the signed one; installed side by side (:mod:`._supervisor`); ``current`` switched with a trial
open; the agent stops gracefully and exits with :data:`EXIT_RESTART` so the supervisor starts
the new version, and rolls it back if it does not come online within ``online_timeout``.
A refusal is reported in the status (``update.state = refused`` with an ``UPDATE_REFUSED``
error) and not retried until a new manifest arrives.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import ssl
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent_config import UpdateSettings, load_public_key
from protocol import (
    BranchPin,
    ErrorCode,
    ProtocolError,
    ReleaseManifest,
    UpdateInfo,
    branch_release_topic,
    channel_release_topic,
    decode_manifest,
    decode_pin,
    error_info,
    manifest_signed_bytes,
    software_version,
)

from ._supervisor import EXIT_RESTART, InstallError, InstallRoot

if TYPE_CHECKING:
    from ._agent import Agent

log = logging.getLogger("branch_agent.update")

#: Seconds after the last release message before deciding (lets the branch pin arrive).
SETTLE_S: Final = 1.0
#: Largest artifact downloaded.
MAX_ARTIFACT_BYTES: Final = 256 * 1024 * 1024


class UpdateRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def rollout_bucket(branch_id: str, agent_id: str) -> int:
    """0-99, fixed per agent: buckets below ``rollout_percent`` take a release."""
    digest = hashlib.sha256(f"{branch_id}/{agent_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def choose(
    *,
    running: str,
    channel: ReleaseManifest | None,
    pin: BranchPin | None,
    bucket: int,
    rejected: dict[str, str],
) -> tuple[ReleaseManifest | None, UpdateInfo]:
    """The release to install (or None) and the state to report."""
    if pin is not None:
        target = pin.release
        if target.version == running:
            return None, UpdateInfo(state="pinned", target=target.version)
    elif channel is None:
        return None, UpdateInfo(state="current")
    else:
        target = channel
        if target.version == running:
            return None, UpdateInfo(state="current", target=running)
        if bucket >= target.rollout_percent:
            return None, UpdateInfo(state="not_selected", target=target.version)
    if target.version in rejected:
        error = error_info(ErrorCode.UPDATE_REFUSED, rejected[target.version])
        return None, UpdateInfo(state="rolled_back", target=target.version, error=error)
    return target, UpdateInfo(state="installing", target=target.version)


def _identity(manifest: ReleaseManifest) -> tuple[str, str, str, str]:
    """What makes a release (not its rollout share): a refusal holds until this changes."""
    return manifest.version, manifest.artifact, manifest.sha256, manifest.signature


def supervised(install: InstallRoot) -> bool:
    """Whether this process runs a version of ``install`` (so a supervisor restarts it into the
    next one). An agent started any other way never switches versions: it would only restart
    into its own code, and again, for ever."""
    try:
        return Path(sys.prefix).resolve().is_relative_to(install.versions.resolve())
    except OSError:
        return False


def verify_manifest(manifest: ReleaseManifest, key: Ed25519PublicKey) -> None:
    try:
        signature = base64.b64decode(manifest.signature, validate=True)
        key.verify(signature, manifest_signed_bytes(manifest))
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise UpdateRefused(
            f"release {manifest.version}: the signature does not verify with update.public_key"
        ) from exc
    name = manifest.artifact
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".whl"):
        raise UpdateRefused(f"release {manifest.version}: artifact {name!r} is not a wheel name")


async def download(settings: UpdateSettings, manifest: ReleaseManifest, directory: Path) -> Path:
    """Fetch the artifact over HTTPS into ``directory``; its SHA-256 must match the manifest."""
    if not settings.base_url.startswith("https://"):
        raise UpdateRefused(f"update.base_url must be https://, not {settings.base_url!r}")
    url = settings.base_url.rstrip("/") + "/" + manifest.artifact
    verify = ssl.create_default_context(cafile=settings.ca_file)
    path = directory / manifest.artifact
    digest = hashlib.sha256()
    size = 0
    try:
        async with (
            httpx.AsyncClient(verify=verify, timeout=30, follow_redirects=False) as http,
            http.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise UpdateRefused(f"GET {url}: HTTP {response.status_code}")
            # A local file written in the network's chunks: not worth a thread per chunk.
            with open(path, "wb") as fh:  # noqa: ASYNC230
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_ARTIFACT_BYTES:
                        raise UpdateRefused(f"{url}: larger than {MAX_ARTIFACT_BYTES} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        raise UpdateRefused(f"GET {url}: {type(exc).__name__}: {exc}") from exc
    if digest.hexdigest() != manifest.sha256.lower():
        raise UpdateRefused(
            f"release {manifest.version}: {manifest.artifact} does not match its signed SHA-256"
        )
    return path


class Updater:
    """The agent's side of signed updates (see the module docstring)."""

    def __init__(self, agent: Agent, settings: UpdateSettings | None) -> None:
        self._agent = agent
        self.settings = settings
        self.info = UpdateInfo()
        self.exit_code = 0
        self._channel: ReleaseManifest | None = None
        self._pin: BranchPin | None = None
        self._decide: asyncio.TimerHandle | None = None
        self._busy: asyncio.Task[None] | None = None
        #: Release messages arrived while an update ran: decide again when it ends.
        self._again = False
        #: What the last refused manifest said (a new manifest is tried again).
        self._refused: tuple[str, str, str, str] | None = None
        self._key: Ed25519PublicKey | None = None
        self._install = InstallRoot(settings.root) if settings else None
        if settings is not None:
            self.info = UpdateInfo(channel=settings.channel, state="current")
            self._key = load_public_key(settings.public_key)

    def topics(self) -> list[str]:
        if self.settings is None:
            return []
        return [
            channel_release_topic(self.settings.channel),
            branch_release_topic(self._agent.branch_id),
        ]

    def on_connected(self) -> None:
        """Online: tell the supervisor this version works (ends its trial)."""
        if self._install is not None:
            try:
                self._install.mark_healthy(software_version())
            except OSError as exc:
                log.error("cannot mark version %s healthy: %s", software_version(), exc)

    def receive(self, topic: str, payload: bytes) -> None:
        assert self.settings is not None
        try:
            if topic == channel_release_topic(self.settings.channel):
                self._channel = decode_manifest(payload) if payload else None
            else:
                self._pin = decode_pin(payload) if payload else None
        except ProtocolError as exc:
            log.warning("ignoring a release message on %s: %s", topic, exc.message)
            return
        if self._decide is not None:
            self._decide.cancel()
        self._decide = asyncio.get_running_loop().call_later(SETTLE_S, self._start)

    def _report(self, info: UpdateInfo) -> None:
        assert self.settings is not None
        info = UpdateInfo(
            channel=self.settings.channel, state=info.state, target=info.target, error=info.error
        )
        if info != self.info:
            self.info = info
            self._agent._status_dirty.set()

    def _start(self) -> None:
        self._decide = None
        if self._busy is not None and not self._busy.done():
            self._again = True  # one at a time; the newest messages are looked at after it
            return
        assert self._install is not None
        target, info = choose(
            running=software_version(),
            channel=self._channel,
            pin=self._pin,
            bucket=rollout_bucket(self._agent.branch_id, self._agent.agent_id),
            rejected=self._install.rejected(),
        )
        if target is not None and _identity(target) == self._refused:
            return  # refused already: wait for a new manifest
        if target is not None and not supervised(self._install):
            text = (
                f"not running from {self._install.versions}: start the agent with "
                "`printermaster agent supervise` to take updates"
            )
            error = error_info(ErrorCode.UPDATE_REFUSED, text)
            self._report(UpdateInfo(state="refused", target=target.version, error=error))
            return
        self._report(info)
        if target is not None:
            self._busy = asyncio.get_running_loop().create_task(self._update(target), name="update")

    async def _update(self, manifest: ReleaseManifest) -> None:
        assert self.settings is not None and self._install is not None and self._key
        install, running = self._install, software_version()
        try:
            verify_manifest(manifest, self._key)
            downloads = install.root / "downloads"
            downloads.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=downloads) as tmp:
                wheel = await download(self.settings, manifest, Path(tmp))
                await asyncio.to_thread(install.install_wheel, wheel, manifest.version)
            install.start_trial(manifest.version, running, self.settings.online_timeout)
        except Exception as exc:  # refusals, OSError and surprises: reported, never a dead task
            if isinstance(exc, UpdateRefused | InstallError):
                text = exc.message
                log.error("update to %s refused: %s", manifest.version, text)
            else:
                text = f"{type(exc).__name__}: {exc}"
                log.exception("update to %s failed", manifest.version)
            self._refused = _identity(manifest)
            error = error_info(ErrorCode.UPDATE_REFUSED, text)
            self._report(UpdateInfo(state="refused", target=manifest.version, error=error))
            if self._again:  # decided again once this task has ended
                self._again = False
                asyncio.get_running_loop().call_soon(self._start)
            return
        log.info("version %s installed; restarting into it (was %s)", manifest.version, running)
        self.exit_code = EXIT_RESTART
        self._agent.stop()
