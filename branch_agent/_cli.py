"""Support commands that run on the branch's machine, without the cloud.

``printermaster agent printers``      configured printers with their status, and CUPS queues
                                      not configured yet
``printermaster agent test-print P``  the test page straight through P's backend
``printermaster agent doctor``        step-by-step checks, see :mod:`branch_agent._doctor`

They read the same config as ``agent run`` (``--config``, else the default location, plus the
``PRINTERMASTER_*`` environment overrides) and print no secret.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import msgspec

from agent_config import AgentConfig, default_config_path, load_config

from ._checks import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    PrinterCheck,
    check_printer,
    describe_reading,
    describe_target,
)
from ._discovery import Discovery, discover
from ._errors import ConfigError
from ._printers import PrinterError, PrinterReading, open_backend


def add_commands(agent_sub: Any) -> None:
    """Register ``printers``, ``test-print`` and ``doctor`` under ``printermaster agent``."""
    printers = agent_sub.add_parser(
        "printers", help="list configured printers with their status, and unconfigured CUPS queues"
    )
    add_config_arg(printers)
    printers.add_argument("--json", action="store_true", help="machine-readable output")
    printers.set_defaults(func=_printers_cmd)

    test = agent_sub.add_parser(
        "test-print", help="print the test page on PRINTER directly (no cloud involved)"
    )
    add_config_arg(test)
    test.add_argument("printer", help="printer name as configured")
    test.set_defaults(func=_test_print_cmd)

    doctor = agent_sub.add_parser(
        "doctor", help="check config, network, TLS, broker login, ACL, round trip and printers"
    )
    add_config_arg(doctor)
    doctor.add_argument(
        "--timeout", type=float, default=5.0, help="seconds for each network step (default 5)"
    )
    doctor.set_defaults(func=_doctor_cmd)


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help=f"agent configuration (TOML); default {default_config_path()}",
    )


def _load(args: argparse.Namespace, err: TextIO) -> AgentConfig | None:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"printermaster agent: {exc}", file=err)
        return None


# --- printers ------------------------------------------------------------------------------


def _printers_cmd(args: argparse.Namespace) -> int:
    return printers_command(args.config, as_json=args.json)


def printers_command(
    config_path: str | None,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    config = _load(argparse.Namespace(config=config_path), err)
    if config is None:
        return EXIT_CONFIG
    checks = [check_printer(config, p) for p in config.printers]
    found = discover(config)
    if as_json:
        print(json.dumps(_printers_json(config, checks, found), indent=2), file=out)
        return EXIT_OK
    print(f"Agent {config.branch_id}/{config.agent_id}", file=out)
    print(f"Configured printers ({len(checks)}):", file=out)
    if not checks:
        print("  (none)", file=out)
    width = max((len(c.config.name) for c in checks), default=0)
    for check in checks:
        state = (
            f"ERROR {check.error.code}: {check.error.message}"
            if check.error
            else describe_reading(check.reading or PrinterReading())
        )
        kind = type(check.config).__struct_config__.tag
        print(f"  {check.config.name:<{width}}  {kind:<7}  {check.target}  {state}", file=out)
    print("Discovered CUPS queues, not configured:", file=out)
    if not found.enabled:
        print("  (discovery.cups = false)", file=out)
    elif found.error:
        print(f"  (CUPS not available: {found.error})", file=out)
    elif not found.queues:
        print("  (none)", file=out)
    for queue in found.queues:
        raw = "raw" if queue.is_raw else "driver: " + queue.make_and_model
        accepting = "" if queue.accepting else ", not accepting jobs"
        print(f"  {queue.name}  {queue.device_uri}  ({raw}{accepting})", file=out)
    print("Discovered USB and network printers, not configured:", file=out)
    for device in found.devices:
        print(f"  {device.name}  {device.description}", file=out)
    for error in found.device_errors:
        print(f"  ({error})", file=out)
    if not found.devices and not found.device_errors:
        print("  (none)", file=out)
    return EXIT_OK


def _printers_json(
    config: AgentConfig, checks: list[PrinterCheck], found: Discovery
) -> dict[str, Any]:
    def reading(r: PrinterReading | None) -> dict[str, Any] | None:
        if r is None:
            return None
        return {
            "online": r.online,
            "paper": r.paper,
            "cover_open": r.cover_open,
            "detail": r.detail,
        }

    return {
        "branch_id": config.branch_id,
        "agent_id": config.agent_id,
        "configured": [
            {
                "name": c.config.name,
                "kind": type(c.config).__struct_config__.tag,
                "target": c.target,
                "status": reading(c.reading),
                "error": {"code": str(c.error.code), "message": c.error.message}
                if c.error
                else None,
            }
            for c in checks
        ],
        "discovered": [
            {
                "name": q.name,
                "device_uri": q.device_uri,
                "make_and_model": q.make_and_model,
                "raw": q.is_raw,
                "accepting": q.accepting,
            }
            for q in found.queues
        ],
        "discovery_error": found.error,
        "discovered_devices": [msgspec.to_builtins(d) for d in found.devices],
        "device_errors": found.device_errors,
    }


# --- test-print ----------------------------------------------------------------------------


def local_job_id(now: dt.datetime) -> str:
    """Job id of a local test print; the time in it is the one printed on the page."""
    return f"local-{now:%Y%m%dT%H%M%SZ}"


def job_time(job_id: str) -> dt.datetime:
    """The inverse of :func:`local_job_id` (tests rebuild the exact page from the id)."""
    return dt.datetime.strptime(job_id, "local-%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def _test_print_cmd(args: argparse.Namespace) -> int:
    return print_test_page_command(args.config, args.printer)


def print_test_page_command(
    config_path: str | None,
    printer: str,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    config = _load(argparse.Namespace(config=config_path), err)
    if config is None:
        return EXIT_CONFIG
    by_name = {p.name: p for p in config.printers}
    if printer not in by_name:
        known = ", ".join(by_name) or "none"
        print(
            f"FAILED PRINTER_NOT_FOUND: no printer {printer!r} in the config (configured: {known})",
            file=out,
        )
        return EXIT_FAILED
    from ._render import render_test_page  # python-escpos: only this command needs it

    now = clock().replace(microsecond=0)
    job_id = local_job_id(now)
    data = render_test_page(
        branch_id=config.branch_id,
        agent_id=config.agent_id,
        printer=printer,
        job_id=job_id,
        now=now,
    )
    target = describe_target(by_name[printer], config.data_dir)
    try:
        backend = open_backend(by_name[printer], config.data_path)
        try:
            backend.write(data, job_id)
        finally:
            backend.close()
    except PrinterError as exc:
        retry = "retryable" if exc.info().retryable else "not retryable"
        print(f"FAILED {exc.code}: {exc.message} ({retry}; {printer} at {target})", file=out)
        return EXIT_FAILED
    except OSError as exc:
        print(f"FAILED PRINTER_ERROR: {exc} ({printer} at {target})", file=out)
        return EXIT_FAILED
    print(f"PRINTED test page {job_id} on {printer} at {target} ({len(data)} bytes)", file=out)
    return EXIT_OK


def _doctor_cmd(args: argparse.Namespace) -> int:
    from ._doctor import doctor_command

    return doctor_command(args.config, timeout=args.timeout)
