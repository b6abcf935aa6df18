"""Signed updates, piece by piece: the choice of release, rollout buckets, signature and hash
checks, downloads from a local HTTPS server, side-by-side installs."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import zipfile
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent_config import UpdateSettings, load_public_key
from branch_agent._supervisor import InstallError, InstallRoot
from branch_agent._update import (
    UpdateRefused,
    choose,
    download,
    rollout_bucket,
    verify_manifest,
)
from cloud_api.releases import public_key_b64, sign_artifact
from protocol import BranchPin, ReleaseManifest

from ._releases import build_wheel, https_server


def _manifest(version: str, percent: int = 100, channel: str = "stable") -> ReleaseManifest:
    return ReleaseManifest(
        channel=channel,
        version=version,
        artifact=f"printermaster-{version}-py3-none-any.whl",
        sha256="00" * 32,
        signature="",
        rollout_percent=percent,
    )


def test_choose_follows_pin_then_channel_then_rollout() -> None:
    v2 = _manifest("2.0")
    target, info = choose(running="1.0", channel=v2, pin=None, bucket=5, rejected={})
    assert target == v2 and info.state == "installing"
    # already there
    target, info = choose(running="2.0", channel=v2, pin=None, bucket=5, rejected={})
    assert target is None and info.state == "current"
    # outside the staged rollout
    half = _manifest("2.0", percent=50)
    assert choose(running="1.0", channel=half, pin=None, bucket=49, rejected={})[0] == half
    target, info = choose(running="1.0", channel=half, pin=None, bucket=50, rejected={})
    assert target is None and info.state == "not_selected" and info.target == "2.0"
    # a pin wins over the channel, in either direction
    pin = BranchPin(branch_id="b", release=_manifest("1.0"))
    target, info = choose(running="1.0", channel=v2, pin=pin, bucket=0, rejected={})
    assert target is None and info.state == "pinned" and info.target == "1.0"
    target, info = choose(running="2.0", channel=v2, pin=pin, bucket=0, rejected={})
    assert target == pin.release
    # never a version that was rolled back
    target, info = choose(running="1.0", channel=v2, pin=None, bucket=0, rejected={"2.0": "x"})
    assert target is None and info.state == "rolled_back" and info.error is not None
    assert choose(running="1.0", channel=None, pin=None, bucket=0, rejected={})[0] is None


def test_rollout_buckets_are_stable_and_spread() -> None:
    assert rollout_bucket("b1", "a1") == rollout_bucket("b1", "a1")
    buckets = [rollout_bucket("branch", f"agent-{i}") for i in range(2000)]
    assert all(0 <= b < 100 for b in buckets)
    share = sum(b < 10 for b in buckets) / len(buckets)
    assert 0.07 < share < 0.13  # about 10 % of agents take a 10 % rollout


def test_signature_covers_version_artifact_hash_and_channel(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    public = load_public_key(public_key_b64(key))
    wheel = build_wheel(tmp_path, "1.2.3")
    manifest = sign_artifact(key, wheel, channel="stable", version="1.2.3")
    verify_manifest(manifest, public)
    verify_manifest(msgspec.structs.replace(manifest, rollout_percent=5), public)  # not signed
    for change in (
        {"version": "1.2.4"},
        {"sha256": "11" * 32},
        {"channel": "beta"},
        {"signature": base64.b64encode(b"x" * 64).decode()},
        {"signature": "not base64!"},
    ):
        with pytest.raises(UpdateRefused, match="signature"):
            verify_manifest(msgspec.structs.replace(manifest, **change), public)
    other = load_public_key(public_key_b64(Ed25519PrivateKey.generate()))
    with pytest.raises(UpdateRefused, match="signature"):
        verify_manifest(manifest, other)


def test_download_checks_https_and_the_signed_hash(tmp_path: Path) -> None:
    served = tmp_path / "www"
    wheel = build_wheel(served, "1.0.1")
    key = Ed25519PrivateKey.generate()
    manifest = sign_artifact(key, wheel, channel="stable", version="1.0.1")
    with https_server(served, tmp_path / "tls") as server:

        def settings(**kw: object) -> UpdateSettings:
            base = {
                "public_key": public_key_b64(key),
                "base_url": server.url,
                "ca_file": str(server.ca_file),
                "root": str(tmp_path / "root"),
            }
            return msgspec.convert({**base, **kw}, UpdateSettings)

        out = tmp_path / "out"
        out.mkdir()
        got = asyncio.run(download(settings(), manifest, out))
        assert got.read_bytes() == wheel.read_bytes()

        # the same file, changed on the server: refused by its hash
        with zipfile.ZipFile(wheel, "a") as zf:
            zf.writestr("printermaster/_evil.py", "print('owned')\n")
        with pytest.raises(UpdateRefused, match="does not match its signed SHA-256"):
            asyncio.run(download(settings(), manifest, out))
        # a server the CA does not vouch for, and plain HTTP: refused
        with pytest.raises(UpdateRefused, match="GET"):
            asyncio.run(download(settings(ca_file=None), manifest, out))
        with pytest.raises(UpdateRefused, match="https"):
            asyncio.run(
                download(settings(base_url=server.url.replace("https", "http")), manifest, out)
            )
        missing = msgspec.structs.replace(manifest, artifact="printermaster-9-py3-none-any.whl")
        with pytest.raises(UpdateRefused, match="HTTP 404"):
            asyncio.run(download(settings(), missing, out))


def test_install_side_by_side_runs_the_installed_version(tmp_path: Path) -> None:
    root = InstallRoot(tmp_path / "root")
    root.write_deps()
    root.install_wheel(build_wheel(tmp_path / "w", "7.0.0"), "7.0.0")
    assert root.installed("7.0.0")
    out = subprocess.run(
        [
            str(root.python("7.0.0")),
            "-I",
            "-c",
            "import protocol; print(protocol.software_version())",
        ],
        cwd=root.root,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "7.0.0"
    code = "import branch_agent, pathlib; print(pathlib.Path(branch_agent.__file__).parent.parent)"
    out = subprocess.run(
        [str(root.python("7.0.0")), "-I", "-c", code],
        cwd=root.root,
        capture_output=True,
        text=True,
        check=True,
    )
    # its own copy of the code, not the checkout the test runs from
    assert Path(out.stdout.strip()).resolve().is_relative_to(root.venv_dir("7.0.0").resolve())


def test_install_refuses_what_is_not_a_pure_wheel(tmp_path: Path) -> None:
    root = InstallRoot(tmp_path / "root")
    root.write_deps()
    evil = tmp_path / "evil.whl"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("x-1.dist-info/METADATA", "Name: x\nVersion: 1\n")
        zf.writestr("../../outside.py", "")
    with pytest.raises(InstallError, match="refusing member"):
        root.install_wheel(evil, "1")
    assert not (tmp_path / "outside.py").exists()
    assert not root.installed("1")
    notwheel = tmp_path / "plain.whl"
    notwheel.write_bytes(b"not a zip")
    with pytest.raises(InstallError):
        root.install_wheel(notwheel, "2")
    assert list(root.versions.iterdir()) == []


def test_only_a_supervised_agent_switches_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from branch_agent._update import supervised

    root = InstallRoot(tmp_path / "root")
    assert not supervised(root)  # this test's interpreter is not a version of the root
    venv = root.venv_dir("1.0.0")
    venv.mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(venv))
    assert supervised(root)
