"""``printermaster broker setup``: everything an operator needs to run a production broker,
written to one directory: ``mosquitto.conf``, TLS material (a CA and a server certificate for
the broker's names), the dynamic-security file with the admin and cloud logins (bootstrap),
``secrets.json`` (mode 0600: the logins for the API's settings) and a systemd unit.

Several brokers of one deployment share the admin and cloud logins: set up the first, then the
others with ``--secrets FIRST/secrets.json`` (docs/operations.md, "Brokers").
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import sys
from pathlib import Path
from typing import Any

from broker import (
    CLOUD_ROLE,
    BrokerConfig,
    BrokerError,
    Credentials,
    MosquittoProcess,
    cloud_role,
    find_mosquitto,
    new_password,
    write_initial_dynsec,
)

UNIT_NAME = "printermaster-broker.service"


def add_setup_parser(broker_sub: Any) -> None:
    p = broker_sub.add_parser(
        "setup",
        help="write a production broker: config, TLS, dynamic-security bootstrap, systemd unit",
    )
    p.add_argument(
        "--dir", required=True, help="directory for everything (e.g. /etc/printermaster/broker)"
    )
    p.add_argument(
        "--hostname",
        action="append",
        default=[],
        help="a DNS name agents use to reach the broker (repeat; goes into the certificate)",
    )
    p.add_argument("--ip", action="append", default=[], help="an IP address agents use (repeat)")
    p.add_argument("--port", type=int, default=1883, help="plain MQTT listener, for the API")
    p.add_argument(
        "--bind",
        default="127.0.0.1",
        help="address of the plain listener (a private address when the API runs elsewhere)",
    )
    p.add_argument("--tls-port", type=int, default=8883, help="MQTT over TLS for agents (0: off)")
    p.add_argument(
        "--websockets-port", type=int, default=443, help="MQTT over WebSockets+TLS (0: off)"
    )
    p.add_argument("--user", default="mosquitto", help="the user Mosquitto runs as")
    p.add_argument(
        "--secrets",
        help="secrets.json of this deployment's first broker: the same admin and cloud logins",
    )
    p.set_defaults(func=run_setup)


def _secrets(path: str | None) -> dict[str, Any]:
    if path is not None:
        data = json.loads(Path(path).read_text())
        return {"admin": data["admin"], "cloud": data["cloud"]}
    return {
        "admin": {"username": "admin", "password": new_password()},
        "cloud": {"username": "cloud", "password": new_password()},
    }


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def render_unit(config: BrokerConfig, user: str, mosquitto: str) -> str:
    """The systemd unit running Mosquitto on ``config`` as ``user``."""
    return f"""# PrinterMaster broker (Mosquitto with dynamic security), written by
# `printermaster broker setup`. Install: cp to /etc/systemd/system/, then
# systemctl daemon-reload && systemctl enable --now {UNIT_NAME}
[Unit]
Description=PrinterMaster MQTT broker (Mosquitto)
Documentation=https://github.com/printermaster/printermaster/blob/main/docs/operations.md
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={mosquitto} -c {config.conf_path}
ExecReload=/bin/kill -HUP $MAINPID
User={user}
Group={user}
# 443/8883 below 1024 without running as root
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
# one file descriptor per connected agent
LimitNOFILE=65536
Restart=on-failure
RestartSec=2s
# Mosquitto saves its sessions and retained messages on SIGTERM
TimeoutStopSec=20s
UMask=0077
ProtectSystem=strict
ReadWritePaths={config.state_dir}
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""


def setup(args: argparse.Namespace) -> tuple[BrokerConfig, Path]:
    directory = Path(args.dir).resolve()
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    config = BrokerConfig(
        directory,
        args.port,
        bind_address=args.bind,
        tls_port=args.tls_port or None,
        websockets_port=args.websockets_port or None,
        tls_bind_address="",
        tls_hostnames=tuple(args.hostname),
        tls_ip_addresses=tuple(args.ip),
        user=args.user,
    )
    secrets_path = directory / "secrets.json"
    if secrets_path.exists() and args.secrets is None:
        secrets = json.loads(secrets_path.read_text())  # a second run keeps the logins
    else:
        secrets = _secrets(args.secrets)
    _write_private(secrets_path, json.dumps(secrets, indent=2) + "\n")
    # an existing file holds every provisioning change since: never overwritten
    write_initial_dynsec(
        config.dynsec_path,
        Credentials(**secrets["admin"]),
        clients=[(Credentials(**secrets["cloud"]), [CLOUD_ROLE])],
        roles=[cloud_role()],
    )
    MosquittoProcess(config).write_config()  # mosquitto.conf, data dir, TLS material
    unit = directory / UNIT_NAME
    unit.write_text(render_unit(config, args.user, _mosquitto()))
    if os.geteuid() == 0:
        _chown_tree(directory, args.user)
    return config, unit


def _mosquitto() -> str:
    try:
        return find_mosquitto()
    except BrokerError:
        return "/usr/sbin/mosquitto"


def _chown_tree(directory: Path, user: str) -> None:
    """Mosquitto must write its dynamic-security file and persistence as ``user``."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        print(f"note: no user {user!r} yet: chown -R {user}: {directory}", file=sys.stderr)
        return
    for path in [directory, *directory.rglob("*")]:
        shutil.chown(path, entry.pw_uid, entry.pw_gid)


def run_setup(args: argparse.Namespace) -> int:
    try:
        config, unit = setup(args)
    except (BrokerError, OSError, KeyError, ValueError) as exc:
        print(f"printermaster broker setup: {exc}", file=sys.stderr)
        return 2
    tls = [p for p in (config.tls_port, config.websockets_port) if p is not None]
    listeners = ", ".join([f"{config.bind_address}:{config.port}", *(f"*:{p} (TLS)" for p in tls)])
    print(
        f"""Broker written to {config.state_dir}:
  mosquitto.conf            listeners {listeners}
  dynamic-security.json     admin and cloud logins (provision agents with the admin login)
  tls/ca.pem                the CA agents trust ([provisioning] ca_file of the API)
  secrets.json              the admin and cloud passwords (0600): put them into api.toml
  {UNIT_NAME}
Next:
  cp {unit} /etc/systemd/system/ && systemctl daemon-reload
  systemctl enable --now {UNIT_NAME}
More brokers of this deployment (the same logins on each):
  printermaster broker setup ... --secrets {config.state_dir}/secrets.json"""
    )
    return 0
