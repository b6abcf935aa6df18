"""``python -m ops.fake_printer``: the fake ESC/POS network printer (:mod:`ops.fake_printer`) as
a process, with its faults from the command line or, at any moment, from a control file."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path

from ops._fake_printer_wire import BEHAVIOURS, PrinterState
from ops.fake_printer import FakePrinter

__all__ = ["main"]

log = logging.getLogger("fake_printer")


class _Control:
    """``--control FILE``: apply the file's settings each time it changes (from a chaos tool)."""

    def __init__(self, printer: FakePrinter, path: Path) -> None:
        self.printer = printer
        self.path = path
        self.seen: int | None = None

    def check(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
            if stamp == self.seen:
                return
            self.seen = stamp
            settings = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("control file %s: %s", self.path, exc)
            return
        printer = self.printer
        for key in ("paper", "cover_open", "online", "error_bits"):
            if key in settings:
                setattr(printer.state, key, settings[key])
        if settings.get("behaviour") in BEHAVIOURS:
            printer.behaviour = settings["behaviour"]
        if "vanish_after" in settings:
            printer.vanish_after = int(settings["vanish_after"])
        if settings.get("stall_for"):
            printer.stall_for(float(settings["stall_for"]))
        if settings.get("paper_out_for"):
            printer.paper_out_for(float(settings["paper_out_for"]))
        log.info("control: %s", settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.fake_printer",
        description="A fake ESC/POS network printer (raw TCP, like port 9100) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=9100, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--paper", choices=["ok", "near_end", "out"], default="ok")
    parser.add_argument("--cover-open", action="store_true")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="normal")
    parser.add_argument("--vanish-after", type=int, default=1, help="vanish_mid_job: bytes kept")
    parser.add_argument("--stall-after", type=float, default=0.0, help="seconds before a stall")
    parser.add_argument("--stall-for", type=float, default=0.0, help="stall this long, recover")
    parser.add_argument("--paper-out-after", type=float, default=0.0)
    parser.add_argument("--paper-out-for", type=float, default=0.0, help="paper out this long")
    parser.add_argument("--save-dir", type=Path, help="write each job to DIR/job-N.prn")
    parser.add_argument(
        "--control",
        type=Path,
        help="a JSON file read whenever it changes: behaviour, paper, cover_open, online, "
        "error_bits, vanish_after, stall_for, paper_out_for (faults at any moment)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # SIGTERM (kill, systemd, a test harness) ends it like Ctrl-C does
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    state = PrinterState(online=not args.offline, paper=args.paper, cover_open=args.cover_open)
    printer = FakePrinter(args.port, state)
    printer.behaviour = args.behaviour
    printer.vanish_after = args.vanish_after
    with printer:
        for after, length, fault in (
            (args.stall_after, args.stall_for, printer.stall_for),
            (args.paper_out_after, args.paper_out_for, printer.paper_out_for),
        ):
            if length > 0:
                timer = threading.Timer(after, fault, (length,))
                timer.daemon = True
                timer.start()
        print(f"fake printer listening on 127.0.0.1:{printer.port}", flush=True)
        seen = 0
        control = _Control(printer, args.control) if args.control else None
        try:
            while True:
                if control is not None:
                    control.check()
                jobs = printer.finished_jobs
                for job in jobs[seen:]:
                    seen += 1
                    log.info("job %d: %d bytes", seen, len(job))
                    if args.save_dir:
                        args.save_dir.mkdir(parents=True, exist_ok=True)
                        (args.save_dir / f"job-{seen}.prn").write_bytes(job)
                time.sleep(0.2)
        except KeyboardInterrupt:
            return 0
