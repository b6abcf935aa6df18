"""The system side of the benchmark: test prints over HTTP keep-alive connections."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from printermaster.stack import Stack

from ._bench_sims import PRINTER, Branch
from ._drive import Call
from ._http import HttpConnection, post_request


class SystemCalls:
    """Test prints over HTTP, one keep-alive connection per worker, spread over the branches."""

    def __init__(self, stack: Stack, branches: Sequence[Branch]) -> None:
        self.host, self.port = "127.0.0.1", stack.http_port
        self.requests = [
            post_request(
                self.host,
                self.port,
                f"/v1/branches/{b.branch_id}/printers/{PRINTER}/test",
                stack.api_token,
            )
            for b in branches
        ]
        #: Every 200 "printed" answer, warm-up included: must equal the agents' job count.
        self.printed = 0
        self._conns: list[HttpConnection] = []

    def calls(self, concurrency: int) -> list[Call]:
        return [self._worker() for _ in range(concurrency)]

    def _worker(self) -> Call:
        conn: HttpConnection | None = None

        async def one(k: int) -> str | None:
            nonlocal conn
            if conn is None or conn.closed:
                conn = await HttpConnection.open(self.host, self.port)
                self._conns.append(conn)
            status, body = await conn.request(self.requests[k % len(self.requests)])
            if status == 200 and b'"printed"' in body:
                self.printed += 1
                return None
            try:
                code = msgspec.json.decode(body)["error"]["code"]
            except (msgspec.DecodeError, KeyError, TypeError):
                code = "?"
            return f"HTTP {status} {code}"

        return one

    async def warm(self, concurrency: int, limit: float = 60.0) -> None:
        """One successful test print per branch: the API has seen every agent online."""
        todo = list(range(len(self.requests)))
        calls = self.calls(concurrency)

        async def worker(call: Call) -> None:
            while todo:
                k = todo.pop()
                # Retried until it prints: 404/503 until the API has seen the agent online.
                for _ in range(int(limit * 10)):
                    if await call(k) is None:
                        break
                    await asyncio.sleep(0.1)

        async with asyncio.timeout(limit):
            await asyncio.gather(*(worker(c) for c in calls))

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
