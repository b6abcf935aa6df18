"""ESC/POS rendering with python-escpos (into memory; the backend sends the bytes)."""

from __future__ import annotations

import datetime as dt

from escpos.printer import Dummy


def render_test_page(
    *, branch_id: str, agent_id: str, printer: str, job_id: str, now: dt.datetime | None = None
) -> bytes:
    """The test page: branch, agent, printer, time, a QR code with the job id, and a cut.

    The QR code is sent as the printer's native command, so no image is rendered here.
    """
    now = now or dt.datetime.now(dt.UTC)
    p = Dummy()
    p.set(align="center", bold=True, double_height=True, double_width=True)
    p.textln("PrinterMaster")
    p.set(align="center", bold=False, normal_textsize=True)
    p.textln("Test page")
    p.textln("-" * 32)
    p.set(align="left", normal_textsize=True)
    p.textln(f"Branch:  {branch_id}")
    p.textln(f"Agent:   {agent_id}")
    p.textln(f"Printer: {printer}")
    p.textln(f"Time:    {now.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    p.textln(f"Job:     {job_id}")
    p.set(align="center")
    p.qr(f"pm:test:{branch_id}:{printer}:{job_id}", native=True, size=6)
    p.textln("If you can read this, printing works.")
    p.cut()
    return bytes(p.output)
