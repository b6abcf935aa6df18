"""``printermaster``: one command for the demo stack, the API, the agent and the broker."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _agent_run(args: argparse.Namespace) -> int:
    from branch_agent import ConfigError, load_config, run_service
    from pmlog import configure_logging

    configure_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"printermaster agent: {exc}", file=sys.stderr)
        return 2
    private_files()
    # SIGTERM (systemd), Ctrl+C (WinSW on Windows, a terminal) and Ctrl+Break: offline first;
    # exit code 75 asks the supervisor to restart into the version just installed
    return run_service(config)


def private_files() -> None:
    """Every file the process creates is its user's alone (0600, directories 0700), whatever
    umask it inherited: job stores and ledgers hold ticket contents, print files are tickets,
    settings and configs hold passwords."""
    os.umask(0o077)


def _api(args: argparse.Namespace) -> int:
    import msgspec

    from cloud_api import SettingsError, load_settings, serve, serve_worker, serve_workers

    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"printermaster api: {exc}", file=sys.stderr)
        return 2
    if args.workers is not None:
        if not 1 <= args.workers <= 64:
            print("printermaster api: --workers must be between 1 and 64", file=sys.stderr)
            return 2
        settings = msgspec.structs.replace(settings, workers=args.workers)
    if args.check:
        from ._api_check import run_check

        return run_check(settings)
    private_files()
    if args.worker is not None:
        serve_worker(settings, args.worker, args.fd)
        return 0
    if settings.workers > 1:
        try:
            return serve_workers(settings, Path(args.config))
        except OSError as exc:
            print(f"printermaster api: {exc}", file=sys.stderr)
            return 2
    serve(settings)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(args.state_dir, http_port=args.http_port, mqtt_port=args.mqtt_port)


#: Commands that run none of the agent's code: for them the ``agent`` commands are not set up,
#: so an API process never loads the agent's runtime (printer drivers, python-escpos).
_NOT_AGENT_COMMANDS = frozenset({"demo", "api", "broker", "release"})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; ``command`` (the command line's first word) leaves out the
    ``agent`` commands when it names another one."""
    parser = argparse.ArgumentParser(prog="printermaster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run broker, API and one agent with a virtual printer")
    demo.add_argument("--state-dir", default="state/demo", help="where everything is kept")
    demo.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="API port (default 8000, or a free port when 8000 is taken)",
    )
    demo.add_argument(
        "--mqtt-port",
        type=int,
        default=None,
        help="broker port (default 1883, or a free port when 1883 is taken)",
    )
    demo.set_defaults(func=_demo)

    api = sub.add_parser("api", help="run the cloud HTTP API")
    api.add_argument("--config", required=True, help="API settings (TOML)")
    api.add_argument(
        "--workers",
        type=int,
        default=None,
        help="API processes sharing the port (overrides `workers` in the settings; Unix)",
    )
    api.add_argument(
        "--check",
        action="store_true",
        help="check the settings, the store and every broker login, then exit (0: all OK)",
    )
    # set by the supervisor for each worker it starts
    api.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    api.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    api.set_defaults(func=_api)

    if command not in _NOT_AGENT_COMMANDS:
        _add_agent_parser(sub)

    from ._fleet_cli import add_release_parser
    from ._provision_cli import add_parser as add_broker_parser

    add_broker_parser(sub)
    add_release_parser(sub)
    return parser


def _add_agent_parser(sub: Any) -> None:
    from branch_agent import add_commands as add_agent_commands
    from branch_agent import add_config_arg

    agent = sub.add_parser("agent", help="the branch agent")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True)
    run = agent_sub.add_parser("run", help="run the agent")
    add_config_arg(run)
    run.add_argument("--log-level", default="INFO")
    run.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        default="auto",
        help="json lines, readable text, or auto: text on a terminal, json otherwise",
    )
    run.set_defaults(func=_agent_run)
    add_agent_commands(agent_sub)
    from ._fleet_cli import add_agent_commands as add_fleet_commands

    add_fleet_commands(agent_sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    return int(args.func(args))


def agent_main(argv: Sequence[str] | None = None) -> int:
    """The single-file agent's entry point: ``printermaster agent ...`` and nothing else (the
    API, the demo and the broker tools stay out of the branch's executable)."""
    parser = argparse.ArgumentParser(prog="printermaster", description="PrinterMaster agent")
    _add_agent_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))
