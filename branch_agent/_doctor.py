"""``printermaster agent doctor``: every link from the config file to the paper, one by one.

Steps, each with one verdict line (``OK``, ``FAIL`` plus the fix to try, or ``SKIP``)::

    config       the file parses, ids are valid
    data dir     exists and is writable (or can be created)
    DNS          the broker host resolves
    TCP          the broker port accepts a connection
    TLS          (tls = true) handshake, certificate verified against the configured CA
    MQTT login   CONNECT with the agent's credentials; the CONNACK reason code, in words
    ACL          SUBSCRIBE to the agent's request topic is granted
    round trip   a probe published on the agent's probe topic comes back through the broker
    printer X    each configured printer's status

A step that needs an earlier one which failed is skipped. The exit code is 0 only when no step
failed. No secret is printed: the password never appears, not even masked.

The doctor logs in as the agent but with a client id of its own (``<username>:doctor``), a clean
start and no session expiry: a running agent keeps its session and its queued requests. The round
trip uses the agent's probe topic (``.../req/probe``), the only topic its role lets it both write
and read, and one nobody else reads. The request topic itself cannot serve: an agent may not
publish requests (a stolen agent login could otherwise print on the branch's printers), and a
running agent would act on them. Presence and status are read by the cloud, and the agent may not
read them back.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import msgspec

from agent_config import AgentConfig, default_config_path, load_config
from protocol import ErrorCode

from ._checks import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, check_printer, describe_reading
from ._doctor_mqtt import check_acl, check_round_trip, connected
from ._doctor_net import check_dns, check_tcp, check_tls
from ._doctor_step import Step, fail, ok, skip
from ._errors import ConfigError
from ._printers import (
    CupsPrinterConfig,
    FilePrinterConfig,
    NetworkPrinterConfig,
    PrinterConfig,
    PrinterReading,
    SerialPrinterConfig,
    UsbPrinterConfig,
    Win32PrinterConfig,
)

__all__ = ["Step", "doctor_command", "run_doctor"]

# --- local steps ---------------------------------------------------------------------------


def check_data_dir(config: AgentConfig) -> Step:
    path = config.data_path
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    fix = (
        "create it and give it to the user the agent runs as (the systemd unit's "
        "StateDirectory= does this), or set data_dir"
    )
    if existing is None or not existing.is_dir():
        return fail("data dir", f"{path} cannot be created", fix)
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created in {existing}"
        return fail("data dir", f"{path} {what} by this user", fix)
    return ok("data dir", f"{path} " + ("is writable" if existing == path else "will be created"))


def _printer_fix(printer: PrinterConfig, code: ErrorCode) -> str:
    if code is ErrorCode.PAPER_OUT:
        return "load paper"
    if code is ErrorCode.COVER_OPEN:
        return "close the printer's cover"
    match printer:
        case NetworkPrinterConfig():
            return (
                f"is the printer on, cabled, and at {printer.host}:{printer.port}? "
                "(a printer without DLE EOT needs status_query = false)"
            )
        case CupsPrinterConfig():
            return f"`lpstat -p {printer.queue}`; `cupsenable {printer.queue}` if it is stopped"
        case UsbPrinterConfig():
            return "is it plugged in (lsusb)? the agent's user needs access (udev rule, group lp)"
        case SerialPrinterConfig():
            return f"check the cable and {printer.device}; the agent's user needs group dialout"
        case FilePrinterConfig():
            return f"does {printer.device} exist? the agent's user needs group lp"
        case Win32PrinterConfig():
            return "check the printer under Windows Settings > Printers & scanners"
    return "see the detail above"


def check_printers(config: AgentConfig) -> list[Step]:
    steps = []
    for printer in config.printers:
        check = check_printer(config, printer)
        kind = type(printer).__struct_config__.tag
        name = f"printer {printer.name} ({kind} {check.target})"
        problem = check.problem
        if problem is None:
            steps.append(ok(name, describe_reading(check.reading or PrinterReading())))
        else:
            shown = describe_reading(check.reading) if check.reading else problem.message
            steps.append(
                fail(name, f"{problem.code}: {shown}", _printer_fix(printer, problem.code))
            )
    return steps


# --- the whole run -------------------------------------------------------------------------


def run_doctor(
    config_path: str | Path | None, *, timeout: float = 5.0, report: Callable[[Step], None]
) -> tuple[AgentConfig | None, list[Step]]:
    """Run every step, calling ``report`` as each ends; returns the config and the steps."""
    steps: list[Step] = []

    def add(step: Step) -> None:
        steps.append(step)
        report(step)

    path = Path(config_path) if config_path else default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        add(fail("config", str(exc), "fix the named key (docs/install-agent.md has an example)"))
        return None, steps
    add(
        ok(
            "config",
            f"{path}: branch {config.branch_id}, agent {config.agent_id}, "
            f"{len(config.printers)} printer(s), broker {config.mqtt.host}:{config.mqtt.port}"
            f" ({'TLS' if config.mqtt.tls else 'plain'}, {config.mqtt.transport})",
        )
    )
    add(check_data_dir(config))
    endpoints = config.mqtt.endpoints()
    for n, endpoint in enumerate(endpoints, 1):
        if len(endpoints) > 1:  # every broker of the list: the agent may need any of them
            add(ok("broker", f"{endpoint.host}:{endpoint.port} ({n} of {len(endpoints)})"))
        for step in _network_steps(msgspec.structs.replace(config, mqtt=endpoint), timeout):
            add(step)
    for step in check_printers(config):
        add(step)
    return config, steps


def _network_steps(config: AgentConfig, timeout: float) -> Iterator[Step]:
    host, port = config.mqtt.host, config.mqtt.port
    later = ["TCP", "TLS", "MQTT login", "ACL", "round trip"]
    dns, _ = check_dns(host, port)
    yield dns
    if dns.verdict == "FAIL":
        yield from (skip(name, "needs DNS") for name in later)
        return
    tcp = check_tcp(host, port, timeout)
    yield tcp
    if tcp.verdict == "FAIL":
        yield from (skip(name, "needs TCP") for name in later[1:])
        return
    if config.mqtt.tls:
        tls = check_tls(config, timeout)
        yield tls
        if tls.verdict == "FAIL":
            yield from (skip(name, "needs TLS") for name in later[2:])
            return
    else:
        loopback = host in ("localhost",) or _is_loopback(host)
        note = "" if loopback else "; the password crosses the network unencrypted"
        yield skip("TLS", f"tls = false{note}")
    with connected(config, timeout) as (session, login):
        yield login
        if session is None:
            yield from (skip(name, "needs MQTT login") for name in later[3:])
            return
        yield check_acl(session, config)
        yield check_round_trip(session, config)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def doctor_command(
    config_path: str | None, *, timeout: float = 5.0, out: TextIO | None = None
) -> int:
    out = out or sys.stdout

    def report(step: Step) -> None:
        for line in step.lines():
            print(line, file=out, flush=True)

    config, steps = run_doctor(config_path, timeout=timeout, report=report)
    failed = [s.name for s in steps if s.verdict == "FAIL"]
    if not failed:
        print(f"All checks passed ({len(steps)} steps).", file=out)
        return EXIT_OK
    print(f"{len(failed)} check(s) failed: {', '.join(failed)}.", file=out)
    return EXIT_CONFIG if config is None else EXIT_FAILED
