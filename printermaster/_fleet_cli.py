"""Commands of signed updates (docs/updates.md).

* ``printermaster agent supervise --root R [--config C]``: what the service manager starts; runs
  the current version of the install root, restarts it, rolls a failed update back.
* ``printermaster agent install-version --root R WHEEL``: the first version of an install root
  (later ones come by update), recording the running environment as the dependencies' home.
* ``printermaster release keygen --out DIR`` and ``printermaster release sign --key K --channel C
  WHEEL``: on the build machine; ``sign`` prints the body of ``POST /v1/releases``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any


def add_agent_commands(agent_sub: Any) -> None:
    from branch_agent import add_config_arg

    sup = agent_sub.add_parser(
        "supervise", help="run the current version of an install root; roll back failed updates"
    )
    sup.add_argument("--root", required=True, help="install root (versions/, current)")
    add_config_arg(sup)
    sup.add_argument("--log-level", default="INFO")
    sup.set_defaults(func=_supervise)

    inst = agent_sub.add_parser(
        "install-version", help="install a wheel as a version of an install root"
    )
    inst.add_argument("--root", required=True, help="install root")
    inst.add_argument("wheel", help="printermaster-VERSION-py3-none-any.whl")
    inst.add_argument(
        "--no-switch", action="store_true", help="install only; keep `current` as it is"
    )
    inst.set_defaults(func=_install_version)


def add_release_parser(sub: Any) -> None:
    release = sub.add_parser("release", help="signed releases (build machine)")
    rsub = release.add_subparsers(dest="release_command", required=True)
    keygen = rsub.add_parser("keygen", help="new Ed25519 key pair: private PEM, public base64")
    keygen.add_argument("--out", required=True, help="directory for release-key.pem")
    keygen.set_defaults(func=_keygen)
    sign = rsub.add_parser("sign", help="print the signed manifest of a wheel (POST /v1/releases)")
    sign.add_argument("--key", required=True, help="private key (PEM)")
    sign.add_argument("--channel", default="stable")
    sign.add_argument("--rollout-percent", type=int, default=100)
    sign.add_argument("wheel")
    sign.set_defaults(func=_sign)


def wheel_version(wheel: Path) -> str:
    """The version in a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith(".dist-info/METADATA"):
                text = zf.read(name).decode()
                match = re.search(r"^Version: *(\S+)", text, re.MULTILINE)
                if match:
                    return match.group(1)
    raise ValueError(f"{wheel}: no Version in its METADATA")


def _supervise(args: argparse.Namespace) -> int:
    from branch_agent import supervise

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    agent_args = ["--log-level", args.log_level]
    if args.config:
        agent_args += ["--config", os.path.abspath(args.config)]
    return supervise(args.root, agent_args)


def _install_version(args: argparse.Namespace) -> int:
    from branch_agent import InstallError, InstallRoot

    wheel = Path(args.wheel)
    try:
        version = wheel_version(wheel)
        root = InstallRoot(args.root)
        if not (root.root / "deps.pth").exists():
            root.write_deps()
        root.install_wheel(wheel, version)
    except (OSError, ValueError, zipfile.BadZipFile, InstallError) as exc:
        print(f"printermaster agent install-version: {exc}", file=sys.stderr)
        return 1
    if not args.no_switch:
        root.set_current(version)
    print(f"installed {version} in {root.versions / version}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from cloud_api.releases import new_key

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pem, public = new_key()
    fd = os.open(out / "release-key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    print(f"private key: {out / 'release-key.pem'} (keep it offline)")
    print(f"public key (agents' update.public_key, API's release_public_key): {public}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    import msgspec

    from cloud_api.releases import load_private_key, sign_artifact

    wheel = Path(args.wheel)
    key = load_private_key(Path(args.key).read_bytes())
    manifest = sign_artifact(key, wheel, channel=args.channel, version=wheel_version(wheel))
    body = msgspec.structs.asdict(manifest)
    body["rollout_percent"] = args.rollout_percent
    for field in ("v", "published_at"):
        body.pop(field)
    print(msgspec.json.encode(body).decode())
    return 0
