"""Test prints: look the printer up, fail fast when nobody can answer, otherwise one MQTT 5
request and two awaited stages (accepted, then done/failed)."""

from __future__ import annotations

import asyncio
import time

import msgspec

from protocol import (
    METHOD_PRINTER_TEST,
    Done,
    ErrorCode,
    Failed,
    PrinterTestParams,
    PrintResult,
    Request,
    encode,
    is_valid_id,
    new_job_id,
    reply_topic,
    request_properties,
    request_topic,
)

from .._correlator import Correlator
from .._errors import ApiError
from .._mqtt import MqttLink
from .._registry import Registry
from .._settings import ApiSettings


class TestPrintOutcome(msgspec.Struct, kw_only=True, frozen=True):
    job_id: str
    status: str
    branch_id: str
    printer_id: str
    agent_id: str
    result: PrintResult | None
    #: Milliseconds from publishing the request to each stage's reply reaching the API.
    timings_ms: dict[str, float]


class PrinterService:
    def __init__(
        self, settings: ApiSettings, link: MqttLink, correlator: Correlator, registry: Registry
    ) -> None:
        self.settings = settings
        self.link = link
        self.correlator = correlator
        self.registry = registry

    async def test_print(
        self, branch_id: str, printer_id: str, *, force: bool = False
    ) -> TestPrintOutcome:
        if not (is_valid_id(branch_id) and is_valid_id(printer_id)):
            raise ApiError(
                ErrorCode.PRINTER_NOT_FOUND,
                f"no printer {printer_id[:64]!r} in branch {branch_id[:64]!r}",
            )
        agent = self.registry.find_printer(branch_id, printer_id)
        if agent is None:
            raise ApiError(
                ErrorCode.PRINTER_NOT_FOUND, f"no printer {printer_id!r} in branch {branch_id!r}"
            )
        if not agent.online():
            raise ApiError(
                ErrorCode.AGENT_OFFLINE,
                f"agent {agent.agent_id!r} serving {printer_id!r} is offline",
            )
        if not force:
            state = agent.printer(printer_id)
            blocking = _blocking_state(state)
            if blocking is not None:
                raise ApiError(
                    blocking[0], f"{printer_id}: {blocking[1]} (pass force=true to try anyway)"
                )
        settings = self.settings
        job_id = new_job_id()
        budget = settings.accept_timeout + settings.result_timeout
        payload = encode(
            Request(
                method=METHOD_PRINTER_TEST,
                params=msgspec.Raw(encode(PrinterTestParams(printer=printer_id))),
                deadline=time.time() + budget + agent.clock_offset,
            )
        )
        props = request_properties(
            response_topic=reply_topic(branch_id, settings.instance_id),
            correlation_id=job_id,
            expiry_s=budget,
        )
        with self.correlator.expect(job_id, branch_id) as pending:
            await self.link.publish(request_topic(branch_id, agent.agent_id), payload, props)
            try:
                async with asyncio.timeout(settings.accept_timeout):
                    await pending.accepted
            except TimeoutError:
                raise ApiError(
                    ErrorCode.AGENT_UNREACHABLE,
                    f"agent {agent.agent_id!r} did not accept the job within "
                    f"{settings.accept_timeout:g} s",
                    job_id=job_id,
                ) from None
            try:
                async with asyncio.timeout(settings.result_timeout):
                    final = await pending.final
            except TimeoutError:
                raise ApiError(
                    ErrorCode.PRINT_TIMEOUT,
                    f"agent {agent.agent_id!r} accepted the job but reported no result within "
                    f"{settings.result_timeout:g} s",
                    job_id=job_id,
                ) from None
        match final:
            case Done(result=result):
                return TestPrintOutcome(
                    job_id=job_id,
                    status="printed",
                    branch_id=branch_id,
                    printer_id=printer_id,
                    agent_id=agent.agent_id,
                    result=result,
                    timings_ms=pending.timings_ms(),
                )
            case Failed(error=error):
                raise ApiError(error.code, error.message, job_id=job_id)
        raise AssertionError("unreachable")  # pragma: no cover


def _blocking_state(state: object) -> tuple[ErrorCode, str] | None:
    from protocol import PrinterState

    if not isinstance(state, PrinterState):
        return None
    if not state.online:
        return ErrorCode.PRINTER_OFFLINE, "printer reports offline"
    if state.cover_open:
        return ErrorCode.COVER_OPEN, "printer cover is open"
    if state.paper == "out":
        return ErrorCode.PAPER_OUT, "printer is out of paper"
    return None
