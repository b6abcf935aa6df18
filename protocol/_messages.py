"""Every message that crosses the broker, as msgspec Structs.

Schema evolution follows msgspec's rules: new fields get defaults, annotations never change, and
decoders ignore unknown fields so an older agent keeps working with a newer cloud.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from ._document import Content, Copies
from ._errors import RETRYABLE, ErrorCode
from ._version import PROTOCOL_VERSION

METHOD_PRINTER_TEST: Final = "printer.test"
METHOD_PRINT_JOB: Final = "print.job"
METHOD_JOB_CANCEL: Final = "job.cancel"


class _Wire(msgspec.Struct, kw_only=True, frozen=True):
    """Base of every wire message."""


# --- requests ------------------------------------------------------------------------------


class Request(_Wire, kw_only=True, frozen=True):
    """An RPC request, cloud -> agent, on the agent's ``req`` topic.

    ``params`` is kept raw and decoded by :func:`protocol.decode_params` once ``method`` is known,
    so an unknown method can still be answered with ``UNKNOWN_METHOD``.

    The deadline travels twice. As the PUBLISH's Message Expiry Interval, the broker drops a
    request that waited too long for the agent. In ``deadline``, the agent refuses a request it
    reads too late (e.g. one that sat in its socket while the process was stalled); the cloud
    writes it in the agent's clock, corrected by the offset it measures from the agent's live
    status messages, so clock skew on a POS box does not turn into refused or late tickets.
    """

    v: int = PROTOCOL_VERSION
    method: str
    params: msgspec.Raw = msgspec.Raw(b"{}")
    #: Epoch seconds in the agent's clock after which the agent must not start the job.
    deadline: float | None = None


class PrinterTestParams(_Wire, kw_only=True, frozen=True):
    """Params of ``printer.test``: print a test page on one printer."""

    printer: str


class PrintJobParams(_Wire, kw_only=True, frozen=True):
    """Params of ``print.job``: print ``content`` on one printer, ``copies`` times.

    The job id is the request's correlation data; the agent's ledger keys on it, so a redelivered
    job is answered from the ledger instead of printing twice.
    """

    printer: str
    content: Content
    copies: Copies = 1


class JobCancelParams(_Wire, kw_only=True, frozen=True):
    """Params of ``job.cancel``: cancel job ``job_id`` if it has not started printing.

    The cancel request is answered ``accepted`` then ``done`` (cancelled) or ``failed``
    (``CONFLICT``: already printing or printed). A job the agent has not received yet (still in
    the broker) is cancelled too: the agent keeps a tombstone and answers the job ``CANCELLED``
    when it arrives. A cancelled job's own reply topic gets a final ``failed`` with ``CANCELLED``.
    """

    job_id: str


#: Params type of every known method.
METHODS: Final[dict[str, type[_Wire]]] = {
    METHOD_PRINTER_TEST: PrinterTestParams,
    METHOD_PRINT_JOB: PrintJobParams,
    METHOD_JOB_CANCEL: JobCancelParams,
}


# --- replies -------------------------------------------------------------------------------


class ErrorInfo(_Wire, kw_only=True, frozen=True):
    """A typed failure: the code decides ``retryable``, the message is for people."""

    code: ErrorCode
    message: str
    retryable: bool = False


def error_info(code: ErrorCode, message: str) -> ErrorInfo:
    """Build the wire form of an error, with ``retryable`` derived from the code."""
    return ErrorInfo(code=code, message=message, retryable=code in RETRYABLE)


class PrintResult(_Wire, kw_only=True, frozen=True):
    """What the agent reports once a job is on paper."""

    printer: str
    bytes: int
    duration_ms: float
    #: True when the result comes from the agent's ledger: the job had printed before.
    replayed: bool = False


class _Reply(_Wire, kw_only=True, frozen=True, tag_field="stage"):
    v: int = PROTOCOL_VERSION
    job_id: str | None = None
    #: Agent clock, epoch seconds, when the stage was reached.
    at: float = 0.0


class Accepted(_Reply, kw_only=True, frozen=True, tag="accepted"):
    """The agent holds the request: delivery proof. A progress stage: an agent may leave it
    out when the final is ready first (see :data:`PROGRESS_STAGES`); when sent, it comes before
    every later reply to the request."""


class Printing(_Reply, kw_only=True, frozen=True, tag="printing"):
    """The agent started sending the job to the printer: from here on it cannot be cancelled,
    and a crash leaves its outcome unknown. A progress stage, like :class:`Accepted`."""


class Waiting(_Reply, kw_only=True, frozen=True, tag="waiting"):
    """The agent holds a print job whose printer cannot print now (offline, out of paper,
    cover open): nothing has been sent to the printer. The job prints when the printer is ready
    again, if that is before its deadline; else it ends ``failed`` with ``EXPIRED``. Sent again
    when the condition changes; ``error`` says what the job waits for. Test prints never wait."""

    error: ErrorInfo


class Done(_Reply, kw_only=True, frozen=True, tag="done"):
    """Final: the job is on paper (``result`` is None for requests that print nothing, such as
    ``job.cancel``)."""

    result: PrintResult | None = None


class Failed(_Reply, kw_only=True, frozen=True, tag="failed"):
    """Final: the job did not print, and why."""

    error: ErrorInfo


Reply = Accepted | Waiting | Printing | Done | Failed

#: Progress stages: each says only that the request got this far, and a final reply to the same
#: request (``done``, ``failed``) says it too. An agent may hold a progress reply back for a
#: moment and drop it when the final is ready first: a fast job is answered with the final alone
#: (docs/agent-ledger.md, "Progress folded into the final"). A cloud must take a final from any
#: earlier state; it never relies on hearing ``accepted`` or ``printing``.
PROGRESS_STAGES: Final = frozenset({"accepted", "printing"})
#: Stages that end a request: nothing follows them.
FINAL_STAGES: Final = frozenset({"done", "failed"})


# --- presence and status -------------------------------------------------------------------


class Presence(_Wire, kw_only=True, frozen=True):
    """Retained on the agent's presence topic: the birth (online) or the Last Will (offline).

    ``session`` rises on every connect, so a will of an older session that arrives after a newer
    birth is recognised and ignored.
    """

    v: int = PROTOCOL_VERSION
    state: Literal["online", "offline"]
    session: int
    branch_id: str
    agent_id: str
    version: str = ""
    at: float = 0.0
    reason: str = ""
    #: The agent's printers, in the birth and in the will: retained without expiry, so the cloud
    #: knows where a printer lives even while its agent is offline (jobs then wait queued).
    printers: list[str] = []


class PrinterState(_Wire, kw_only=True, frozen=True):
    """One printer as the agent sees it."""

    name: str
    kind: str = "virtual"
    online: bool = True
    paper: Literal["ok", "near_end", "out", "unknown"] = "unknown"
    cover_open: bool | None = None
    last_error: ErrorInfo | None = None
    last_printed_at: float | None = None


def blocking_condition(
    *, online: bool, cover_open: bool | None, paper: str
) -> tuple[ErrorCode, str] | None:
    """The error a job would hit on a printer in this state, if any: one rule for the agent
    (before it prints) and the cloud (before it sends a test print)."""
    if not online:
        return ErrorCode.PRINTER_OFFLINE, "printer is offline"
    if cover_open:
        return ErrorCode.COVER_OPEN, "printer cover is open"
    if paper == "out":
        return ErrorCode.PAPER_OUT, "printer is out of paper"
    return None


class DiscoveredPrinter(_Wire, kw_only=True, frozen=True):
    """A printer the agent found and has not configured (CUPS queue, USB device, port 9100)."""

    kind: str
    #: A suggested printer id (``usb-04b8-0e15``, ``net-192.168.1.50-9100``, the CUPS queue).
    name: str
    description: str = ""
    #: A printer table ready for ``PUT .../agents/{a}/printers`` (rename it at will).
    config: dict[str, str | int] = {}


class ConfigRejection(_Wire, kw_only=True, frozen=True):
    """A configuration version the agent refused, and why; it keeps the one it had."""

    version: int
    error: ErrorInfo


class UpdateInfo(_Wire, kw_only=True, frozen=True):
    """Where an agent stands with updates (in its status).

    ``state``: ``disabled`` (no update settings), ``current`` (runs what it should), ``pinned``
    (its branch is pinned to ``target``, which it runs), ``not_selected`` (outside the staged
    rollout of ``target``), ``installing``, ``refused`` (``target`` failed verification or
    installation: ``error``), ``rolled_back`` (``target`` did not come online in time).
    """

    channel: str = ""
    state: str = "disabled"
    target: str = ""
    error: ErrorInfo | None = None


class AgentStatus(_Wire, kw_only=True, frozen=True):
    """Retained on the agent's status topic: its printers and its own health."""

    v: int = PROTOCOL_VERSION
    branch_id: str
    agent_id: str
    session: int
    version: str = ""
    os: str = ""
    started_at: float = 0.0
    uptime_s: float = 0.0
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    queue_depth: int = 0
    printers: list[PrinterState] = []
    at: float = 0.0
    #: Printers the agent can see but has not configured (CUPS queues), so the dashboard can
    #: offer them; configured ones are in ``printers``.
    discovered: list[str] = []
    #: Version of the remote printer configuration in use (0: never configured from the cloud).
    config_version: int = 0
    #: The newest remote configuration the agent refused, while it keeps ``config_version``.
    config_error: ConfigRejection | None = None
    #: Where the agent stands with signed updates.
    update: UpdateInfo = UpdateInfo()
    #: What ``discovered`` names, with how to configure each (USB and network printers).
    discovered_printers: list[DiscoveredPrinter] = []
