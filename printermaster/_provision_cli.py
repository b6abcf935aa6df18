"""``printermaster broker provision add|rotate|revoke|list|upgrade``: agent logins without the
API.

The broker is reached with its admin login, from a stack's state directory (``--state-dir``:
``secrets.json`` and the generated ``mosquitto.conf``) or given directly (``--host``, ``--port``,
``--admin-user``, and the password from ``PM_ADMIN_PASSWORD`` so it stays out of ``ps``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    broker = sub.add_parser("broker", help="broker administration")
    broker_sub = broker.add_subparsers(dest="broker_command", required=True)
    from ._broker_setup import add_setup_parser

    add_setup_parser(broker_sub)
    prov = broker_sub.add_parser(
        "provision", help="add, rotate, revoke or list agent logins (no broker restart)"
    )
    actions = prov.add_subparsers(dest="action", required=True)
    for name, text in (
        ("add", "create an agent login and print its config (TOML)"),
        ("rotate", "new password for an agent (its live session is dropped); print the config"),
        ("revoke", "disconnect and delete an agent's login, clear its presence"),
        ("list", "list provisioned agents"),
        (
            "upgrade",
            "bind every agent login to its client id and narrow its role to this release's "
            "rules (own reply topics); passwords unchanged",
        ),
    ):
        p = actions.add_parser(name, help=text)
        _connection_args(p)
        if name in ("list", "upgrade"):
            p.add_argument("--branch", help="only this branch")
        else:
            p.add_argument("--branch", required=True, help="branch id")
            p.add_argument("--agent", required=True, help="agent id")
        if name in ("add", "rotate"):
            _config_args(p)
        p.set_defaults(func=run)


def _connection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("broker admin connection")
    g.add_argument("--state-dir", help="a PrinterMaster state directory (demo/stack)")
    g.add_argument("--host", help="broker host (default 127.0.0.1)")
    g.add_argument("--port", type=int, help="broker port")
    g.add_argument("--admin-user", help="admin username (default: admin)")
    g.add_argument("--admin-tls", action="store_true", help="connect to the broker with TLS")
    g.add_argument("--admin-ca-file", help="CA file for --admin-tls")
    g.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="another broker of the deployment (same admin login; repeat): the change is made "
        "there too, with the same password",
    )


def _config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the agent config printed")
    g.add_argument("--broker-host", help="broker host as the branch sees it (default: --host)")
    g.add_argument("--broker-port", type=int, help="broker port as the branch sees it")
    g.add_argument("--transport", choices=("tcp", "websockets"), default="tcp")
    g.add_argument("--websocket-path", default="/mqtt")
    g.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the agent connects with TLS (default: yes for a broker outside loopback)",
    )
    g.add_argument("--ca-file", help="CA certificate (PEM) embedded into the config")
    g.add_argument(
        "--platform",
        choices=("linux", "windows"),
        default="linux",
        help="where the agent runs: its data directory and config location (default linux)",
    )
    g.add_argument(
        "--data-dir",
        default=None,
        help="agent data directory ({branch_id} and {agent_id} are replaced; default "
        "/var/lib/printermaster on Linux, C:\\ProgramData\\printermaster\\data on Windows)",
    )
    g.add_argument(
        "--virtual-printer", action="append", default=[], metavar="NAME", help="repeatable"
    )
    g.add_argument("--output", "-o", help="write the config to this file (mode 0600)")
    g.add_argument(
        "--also-broker",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="the --also brokers as the branch sees them, in order (default: the --also ones)",
    )


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{text!r}: expected HOST:PORT")
    return host, int(port)


def _admin_target(args: argparse.Namespace) -> tuple[str, int, str, str]:
    host, port, user, password = args.host, args.port, args.admin_user, None
    if args.state_dir:
        state = Path(args.state_dir)
        secrets = json.loads((state / "secrets.json").read_text())
        user = user or secrets["admin"]["username"]
        password = secrets["admin"]["password"]
        if port is None:
            conf = (state / "broker" / "mosquitto.conf").read_text()
            match = re.search(r"^listener (\d+)", conf, re.MULTILINE)
            if match is None:
                raise SystemExit("no listener in the state directory's mosquitto.conf")
            port = int(match.group(1))
    password = os.environ.get("PM_ADMIN_PASSWORD", password)
    if port is None or password is None:
        raise SystemExit("give --state-dir, or --port with PM_ADMIN_PASSWORD in the environment")
    return host or "127.0.0.1", port, user or "admin", password


async def _run(
    args: argparse.Namespace, target: tuple[str, int, str, str], ca_pem: str | None
) -> str:
    from agent_config import VirtualPrinterConfig
    from broker import Credentials, DynSecAdmin, Provisioner
    from cloud_api.provisioning import (
        WINDOWS_DATA_DIR,
        BrokerEndpoint,
        is_loopback,
        render_agent_config,
    )

    host, port, user, password = target
    also = [_host_port(a) for a in args.also]
    tls = ssl.create_default_context(cafile=args.admin_ca_file) if args.admin_tls else None
    async with DynSecAdmin(host, port, Credentials(user, password), tls_context=tls) as admin:
        prov = Provisioner(admin)
        match args.action:
            case "list":
                rows = await prov.list_agents(args.branch)
                return "".join(
                    f"{a.branch_id}\t{a.agent_id}\t{'enabled' if a.enabled else 'DISABLED'}\n"
                    for a in rows
                )
            case "revoke":
                await prov.revoke_agent(args.branch, args.agent)
            case "upgrade":
                upgraded = []
                for agent in await prov.list_agents(args.branch):
                    await prov.upgrade_agent(agent.branch_id, agent.agent_id)
                    upgraded.append(f"{agent.branch_id}\t{agent.agent_id}\tupgraded\n")
                return "".join(upgraded)
            case "add":
                creds = await prov.add_agent(args.branch, args.agent)
            case _:
                creds = await prov.rotate_agent(args.branch, args.agent)
    for other_host, other_port in also:  # the same change on every other broker
        creds_kw = {} if args.action == "revoke" else {"password": creds.password}
        async with DynSecAdmin(
            other_host, other_port, Credentials(user, password), tls_context=tls
        ) as admin:
            other = Provisioner(admin)
            match args.action:
                case "revoke":
                    await other.revoke_agent(args.branch, args.agent)
                case "add":
                    await other.add_agent(args.branch, args.agent, **creds_kw)
                case _:
                    await other.rotate_agent(args.branch, args.agent, **creds_kw)
    if args.action == "revoke":
        return ""
    first = (args.broker_host or host, args.broker_port or port)
    seen = [_host_port(a) for a in args.also_broker] or also
    endpoint = BrokerEndpoint(
        host=first[0],
        port=first[1],
        transport=args.transport,
        websocket_path=args.websocket_path,
        tls=args.tls if args.tls is not None else not is_loopback(first[0]),
        ca_pem=ca_pem,
        brokers=(first, *seen) if seen else (),
    )
    return render_agent_config(
        branch_id=args.branch,
        agent_id=args.agent,
        creds=creds,
        broker=endpoint,
        data_dir=args.data_dir or "/var/lib/printermaster",
        printers=[VirtualPrinterConfig(name=n) for n in args.virtual_printer],
        platform=args.platform,
        windows_data_dir=args.data_dir or WINDOWS_DATA_DIR,
    )


def run(args: argparse.Namespace) -> int:
    import aiomqtt

    from branch_agent import ConfigError
    from broker import BrokerError
    from protocol import ProtocolError

    try:
        ca_file = getattr(args, "ca_file", None)
        ca_pem = Path(ca_file).read_text() if ca_file else None
        text = asyncio.run(_run(args, _admin_target(args), ca_pem))
    except (BrokerError, ProtocolError, ConfigError, aiomqtt.MqttError, OSError, ValueError) as exc:
        print(f"printermaster broker provision {args.action}: {exc}", file=sys.stderr)
        return 1
    output = getattr(args, "output", None)
    if output and text:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0
