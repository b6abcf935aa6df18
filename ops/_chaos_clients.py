"""The clients of a chaos run (:mod:`ops.chaos`): print jobs submitted at a steady rate and test
prints from a dashboard that retries, each retrying through the API instances that run."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx

from ops._chaos_audit import ChaosReport, TestPrintAnswer
from ops._chaos_config import NO_API_FOR, PRINTER, ChaosConfig
from ops._chaos_faults import Timeline
from printermaster.stack import AgentHandle, Stack

__all__ = ["api_urls", "submit_all"]


async def submit_all(
    stack: Stack,
    agents: list[AgentHandle],
    config: ChaosConfig,
    tl: Timeline,
    report: ChaosReport,
    answers: list[TestPrintAnswer],
) -> dict[int, str]:
    """Submit ``config.jobs`` jobs at a steady rate; retry with the same Idempotency-Key on
    connection errors and 5xx until the API answers 200/202. Returns index -> job id. Test
    prints go out among them (:func:`_test_print`)."""
    run = secrets.token_hex(4)
    ids: dict[int, str] = {}
    virtual = [h for h in agents if PRINTER in h.printers]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {stack.api_token}"},
        timeout=10,
        limits=limits,
    ) as http:

        async def one(i: int) -> None:
            handle = agents[i % len(agents)]
            text = f"CHAOS-{i}-END"
            body = {
                "branch_id": handle.branch_id,
                "printer_id": handle.printers[0],
                "content": {"type": "document", "blocks": [{"type": "text", "text": text}]},
                "expire_after": config.deadline(i),
            }
            key = f"chaos-{run}-{i}"
            attempt = 0
            give_up = time.monotonic() + NO_API_FOR
            while True:
                url = api_urls(stack)[(i + attempt) % len(api_urls(stack))]
                attempt += 1
                try:
                    response = await http.post(
                        f"{url}/v1/jobs", json=body, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code in (200, 202):
                    ids[i] = response.json()["id"]
                    return
                if response is not None and response.status_code < 500:
                    report.rejected[i] = f"{response.status_code} {response.text[:200]}"
                    return
                if time.monotonic() > give_up:
                    what = response.status_code if response is not None else "no answer"
                    report.rejected[i] = f"{what} for {NO_API_FOR:g} s"
                    return
                report.submit_retries += 1
                await asyncio.sleep(0.2)

        tasks = []
        every = max(1, config.jobs // config.test_prints) if config.test_prints else 0
        for i in range(config.jobs):
            delay = tl.start + i / config.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
            if every and i % every == 0 and i // every < config.test_prints:
                handle = virtual[(i // every) % len(virtual)]
                key = f"chaos-{run}-test-{i}"
                tasks.append(asyncio.create_task(_test_print(http, stack, handle, i, key, answers)))
        await asyncio.gather(*tasks)
    return ids


async def _test_print(
    http: httpx.AsyncClient,
    stack: Stack,
    handle: AgentHandle,
    index: int,
    key: str,
    answers: list[TestPrintAnswer],
) -> None:
    """A dashboard's test print that retries as the answer invites: an error body with
    ``retryable: true`` is retried with the same Idempotency-Key (at most 3 retries, 0.5 s
    apart), and so is a connection error (the API is down: until it answers, as the
    submissions do, for at most ``NO_API_FOR`` s); anything else is the answer."""
    path = f"/v1/branches/{handle.branch_id}/printers/{PRINTER}/test"
    attempt = tries = 0
    give_up = time.monotonic() + NO_API_FOR
    while attempt < 4:
        urls = api_urls(stack)
        url = urls[(index + tries) % len(urls)]
        tries += 1
        try:
            response = await http.post(url + path, headers={"Idempotency-Key": key}, timeout=60)
        except httpx.TransportError:
            if time.monotonic() > give_up:
                answers.append(TestPrintAnswer(index, attempt, 0, "NO_ANSWER", None, None))
                return
            await asyncio.sleep(0.5)
            continue
        try:
            data = response.json()
        except ValueError:
            data = {}
        error = data.get("error") or {}
        job_id = data.get("job_id") or error.get("job_id")
        answers.append(
            TestPrintAnswer(
                index,
                attempt,
                response.status_code,
                error.get("code"),
                error.get("retryable"),
                job_id,
            )
        )
        if response.status_code == 200 or not error.get("retryable"):
            return
        attempt += 1
        await asyncio.sleep(0.5)


def api_urls(stack: Stack) -> list[str]:
    """The API instances that run (the first is killed for good when there are several)."""
    urls = [stack.api_url] if stack.api is not None and stack.api.running() else []
    urls += [extra.url for extra in stack.apis if extra.process.running()]
    return urls or [stack.api_url]
