"""HTTP limits of the running API: rate limits per API key and per printer (429 with
Retry-After), and the request head bounded before it is read whole (431 at once)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from printermaster.stack import Stack

from .conftest import make_stack


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with tight limits: 1 request per second per key and per printer, bursts of 3."""
    with make_stack(
        tmp_path_factory.mktemp("limited"),
        rate_limit_per_key=1.0,
        rate_limit_key_burst=3,
        rate_limit_per_printer=1.0,
        rate_limit_printer_burst=3,
    ) as stack:
        yield stack


def test_an_api_key_past_its_rate_gets_429_with_retry_after(limited: Stack) -> None:
    with limited.client(timeout=10) as admin:
        created = admin.post("/v1/api-keys", json={"chain": "c1", "branches": ["b-rate"]})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        codes = []
        with httpx.Client(
            base_url=limited.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as dashboard:
            for _ in range(5):
                response = dashboard.get("/v1/fleet")
                codes.append(response.status_code)
            assert codes[:3] == [200, 200, 200], codes
            assert 429 in codes[3:], codes
            assert response.status_code == 429
            assert response.json()["error"]["code"] == "RATE_LIMITED"
            assert response.json()["error"]["retryable"] is True
            assert int(response.headers["Retry-After"]) >= 1
            # the admin token is not limited per key, and the bucket refills
            assert all(admin.get("/v1/fleet").status_code == 200 for _ in range(6))
            time.sleep(float(response.headers["Retry-After"]))
            assert dashboard.get("/v1/fleet").status_code == 200


def test_a_printer_past_its_rate_gets_429(limited: Stack) -> None:
    agent = limited.add_agent("b-rate", "a1", ["POS-80C"])
    limited.wait_agent("b-rate", "a1")
    try:
        with limited.client(timeout=30) as http:
            codes = [
                http.post("/v1/branches/b-rate/printers/POS-80C/test").status_code for _ in range(5)
            ]
            assert codes[:3] == [200, 200, 200], codes
            assert codes[3:].count(429) >= 1, codes
            job = http.post(
                "/v1/jobs",
                json={
                    "branch_id": "b-rate",
                    "printer_id": "POS-80C",
                    "content": {"type": "raw", "data": "aGVsbG8="},
                },
            )
            assert job.status_code == 429 and "Retry-After" in job.headers, job.text
    finally:
        agent.process.stop()


def _head_then_read(port: int, head: bytes, total: int) -> tuple[bytes, int]:
    """Send ``head`` and ``total`` bytes of one more header in 16 KiB pieces; the answer and
    how many bytes went out before the API closed the connection."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            sock.sendall(b"X-Big: ")
            piece = b"a" * 16384
            while sent < total:
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer, sent


def test_a_one_megabyte_header_is_refused_at_once(stack: Stack) -> None:
    """Refused while it arrives: the connection closes long before 8 MB are sent (what the
    kernels' socket buffers absorb meanwhile is all that goes out)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    total = 8 * 1024 * 1024
    answer, sent = _head_then_read(stack.http_port, head, total)
    print(f"the API answered after {sent} of {total} header bytes: {answer[:60]!r}")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert sent < total
    assert httpx.get(f"{stack.api_url}/healthz").status_code == 200


def test_too_many_headers_are_refused_and_normal_requests_pass(stack: Stack) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    # an ordinary request with a few dozen headers, three times on one connection
    headers = {f"X-H{i}": "v" * 100 for i in range(40)}
    with httpx.Client(base_url=stack.api_url, headers=headers) as http:
        assert [http.get("/healthz").status_code for _ in range(3)] == [200] * 3


def test_settings_name_the_limits(tmp_path: Path) -> None:
    from cloud_api._settings import ApiSettings, MqttClientSettings

    settings = ApiSettings(api_token="t", mqtt=MqttClientSettings(username="u", password="p"))
    assert settings.rate_limit_per_key > 0 and settings.rate_limit_per_printer > 0
    assert settings.max_header_bytes == 32 * 1024 and settings.max_header_count == 100


def test_responses_with_secrets_are_never_cached_and_invalid_branches_are_404(
    stack: Stack,
) -> None:
    with stack.client(timeout=10) as http:
        created = http.post("/v1/api-keys", json={"chain": "c-cache", "branches": ["b-cache"]})
        assert created.status_code == 201, created.text
        assert created.headers["Cache-Control"] == "no-store"
        assert http.get("/v1/api-keys").headers["Cache-Control"] == "no-store"
        assert http.get("/v1/fleet").headers["Cache-Control"] == "no-store"
        for route in ("agents", "printers"):
            response = http.get(f"/v1/branches/bad..id/{route}")
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "NOT_FOUND"


def test_files_with_job_content_or_secrets_are_private_whatever_the_umask(
    tmp_path: Path,
) -> None:
    old = os.umask(0o002)  # a permissive umask the processes inherit
    try:
        with make_stack(tmp_path) as stack:
            agent = stack.add_agent("b-files", "a1", ["POS-80C"])
            stack.wait_agent("b-files", "a1")
            with stack.client(timeout=30) as http:
                assert http.post("/v1/branches/b-files/printers/POS-80C/test").status_code == 200
            agent.process.stop()
            stack.stop()
            files = [
                *[p for p in agent.data_dir.rglob("*") if p.is_file()],
                *stack.state_dir.glob("jobs.db*"),
            ]
            kinds = {p.suffix or p.name for p in files}
            assert ".prn" in kinds and ".db" in kinds, kinds  # print files, ledger, job store
            loose = {
                str(p): oct(p.stat().st_mode & 0o777) for p in files if p.stat().st_mode & 0o077
            }
            assert not loose, loose
    finally:
        os.umask(old)
