"""What the agent makes of an incoming request: validated into what the job ledger records
(:mod:`._jobs`), or a typed refusal; never silence where a reply can be addressed.

A request's reply goes to its Response Topic with its Correlation Data (the job id). The broker
lets this agent publish only on its own reply topics, so a Response Topic elsewhere is refused
here rather than answered into a denial.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import aiomqtt

from protocol import (
    ErrorCode,
    JobCancelParams,
    PrinterTestParams,
    PrintJobParams,
    ProtocolError,
    TopicKind,
    decode_params,
    decode_request,
    is_valid_id,
    parse_topic,
)

from ._jobs import CancelRequest, Intake, JobRequest, PrinterSlot, Refusal

if TYPE_CHECKING:
    from ._fleet import Fleet

log = logging.getLogger("branch_agent")


class RequestIntake:
    """The agent's request validation (a part of :class:`branch_agent.Agent`)."""

    branch_id: str
    agent_id: str
    printers: dict[str, PrinterSlot]
    fleet: Fleet

    def _reply_target(self, message: aiomqtt.Message) -> tuple[str | None, bytes | None]:
        props = message.properties
        topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if topic is None:
            return None, correlation
        try:
            parsed = parse_topic(topic)
        except ProtocolError:
            parsed = None
        if (
            parsed is None
            or parsed.kind is not TopicKind.REPLY
            or parsed.branch_id != self.branch_id
            or parsed.agent_id != self.agent_id
        ):
            # The broker lets this agent publish only on pm/v1/{branch}/reply/+/{agent}: a
            # reply anywhere else would be refused (and its job would never be answered).
            log.warning(
                "refusing to reply on %r: not a reply topic of agent %s/%s",
                topic[:200],
                self.branch_id,
                self.agent_id,
            )
            return None, correlation
        return topic, correlation

    def _intake(self, message: aiomqtt.Message) -> Intake:
        """Validate one request into what the job ledger records (or a typed refusal)."""
        if self.fleet.handle(message):  # printer configuration, releases
            return None
        reply_to, correlation = self._reply_target(message)
        job_id = None
        if correlation is not None:
            try:
                candidate = correlation.decode("ascii")
            except UnicodeDecodeError:
                candidate = ""
            job_id = candidate if is_valid_id(candidate) else None

        def refuse(code: ErrorCode, text: str) -> Refusal:
            log.info("request %s failed: %s %s", job_id, code, text)
            return Refusal(job_id, reply_to, correlation, code, text)

        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            return refuse(ErrorCode.INVALID_REQUEST, "payload is not bytes")
        try:
            request = decode_request(bytes(payload))
            params = decode_params(request)
        except ProtocolError as exc:
            return refuse(exc.code, exc.message)
        if job_id is None or correlation is None:
            return refuse(
                ErrorCode.INVALID_REQUEST,
                "correlation data must be the job id: 1-64 ASCII characters of A-Z a-z 0-9 _ . -",
            )
        if reply_to is None:
            log.warning("request %s has no usable response topic; not executed", job_id)
            return None
        match params:
            case PrinterTestParams(printer=name) | PrintJobParams(printer=name):
                if name not in self.printers:
                    return refuse(
                        ErrorCode.PRINTER_NOT_FOUND,
                        f"agent {self.agent_id} has no printer {name[:64]!r}",
                    )
                deadline = _deadline(request.deadline, message)
                return JobRequest(
                    job_id,
                    request.method,
                    name,
                    bytes(request.params),
                    reply_to,
                    correlation,
                    deadline,
                    params,
                )
            case JobCancelParams(job_id=target):
                return CancelRequest(job_id, target, reply_to, correlation)
            case _:  # a method in the protocol this agent does not serve yet
                return refuse(
                    ErrorCode.UNKNOWN_METHOD, f"method {request.method!r} is not served here"
                )


def _deadline(payload_deadline: float | None, message: aiomqtt.Message) -> float | None:
    """The earlier of the payload's deadline (agent clock) and the broker's remaining expiry."""
    expiry = getattr(message.properties, "MessageExpiryInterval", None)
    candidates = [d for d in (payload_deadline, expiry and time.time() + expiry) if d]
    return min(candidates) if candidates else None
