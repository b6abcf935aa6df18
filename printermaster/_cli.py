"""``printermaster``: one command for the demo stack, the API, the agent and the broker."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path


def _agent_run(args: argparse.Namespace) -> int:
    from branch_agent import Agent, ConfigError, load_config
    from protocol import configure_logging

    configure_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"printermaster agent: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        agent = Agent(config)
        loop = asyncio.get_running_loop()
        if sys.platform != "win32":
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


def _api(args: argparse.Namespace) -> int:
    import msgspec

    from cloud_api import SettingsError, load_settings
    from cloud_api._server import serve, serve_worker, serve_workers

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


def build_parser() -> argparse.ArgumentParser:
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
    # set by the supervisor for each worker it starts
    api.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    api.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    api.set_defaults(func=_api)

    from branch_agent._cli import add_commands as add_agent_commands
    from branch_agent._cli import add_config_arg

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

    from ._provision_cli import add_parser as add_broker_parser

    add_broker_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
