"""Content is decoded (and validated: images opened with Pillow) once per side: once by the
API when the job is submitted, once by the agent when the request arrives, and rendered from
that decoding. A counting spy wraps the protocol's image check, the step that decodes every
pixel; it changes nothing else.

The cloud side is the job service in one process, as in ``test_job_service.py``, behind the
route's own body decoder; the agent side is its job lifecycle on a real ledger and a virtual
printer, fed the request the service published, decoded as the agent's intake decodes it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

import protocol._document as document
from branch_agent._jobs import JobRequest, Jobs, PrinterSlot
from branch_agent._ledger import LEDGER_FILE, Ledger
from branch_agent._printers import VirtualPrinter
from cloud_api.jobs import JobService
from cloud_api.jobs._answers import decode_submit
from cloud_api.store import JobState
from protocol import decode_params, decode_request, reply_topic

from .content_strategies import image_file
from .test_job_service import ADMIN, PRINTER, link_of, published
from .test_job_service import service as service


@pytest.fixture
def image_decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every image the protocol's content check decodes, in order."""
    seen: list[bytes] = []
    real: Callable[[bytes], None] = document._check_image

    def counted(data: bytes) -> None:
        seen.append(data)
        real(data)

    monkeypatch.setattr(document, "_check_image", counted)
    yield seen


def _body(image: bytes) -> bytes:
    content = {
        "type": "document",
        "blocks": [
            {"type": "text", "text": "Table 7"},
            {"type": "image", "data": base64.b64encode(image).decode()},
            {"type": "cut"},
        ],
    }
    return msgspec.json.encode({"branch_id": "b1", "printer_id": PRINTER, "content": content})


async def test_one_job_decodes_its_image_once_in_the_api_and_once_in_the_agent(
    service: JobService, image_decodes: list[bytes], tmp_path: Path
) -> None:
    image = image_file(96, 48, "L", "PNG", seed=7)

    # the API: the route's decoder, then the service stores and publishes the job
    job, created = await service.submit(ADMIN, decode_submit(_body(image)))
    assert created and job.state is JobState.SENT
    await published(service)
    assert image_decodes == [image]  # once in the API

    # the agent: the request as published, decoded as the intake decodes it, then printed
    payload = link_of(service).payloads[0]
    request = decode_request(payload)
    params = decode_params(request)
    assert image_decodes == [image, image]  # once more: the agent's own validation
    printer = VirtualPrinter(PRINTER, tmp_path / "printer")
    slot = PrinterSlot(printer)
    async with Ledger(tmp_path / LEDGER_FILE) as ledger:
        jobs = Jobs(ledger, {PRINTER: slot}, branch_id="b1", agent_id="a1")
        worker = asyncio.create_task(jobs.run_printer(slot))
        try:
            intake = JobRequest(
                job.id,
                request.method,
                PRINTER,
                bytes(request.params),
                reply_topic("b1", "api", "a1"),
                job.id.encode(),
                time.time() + 60,
                params,
            )
            jobs.admitted(await jobs.submit(intake))
            end = time.monotonic() + 10
            while not printer.journal():
                assert time.monotonic() < end, "nothing printed"
                await asyncio.sleep(0.02)
        finally:
            jobs.close()
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    assert image_decodes == [image, image]  # rendered from the intake's decoding
