"""Helpers for job tests: submit, wait for a state, read the timeline."""

from __future__ import annotations

from typing import Any

import httpx

from ._wait import eventually

FINAL = {"printed", "failed", "expired", "cancelled", "outcome_unknown"}


def receipt(text: str = "Table 7", *, copies_note: str = "") -> dict[str, Any]:
    return {
        "type": "document",
        "blocks": [
            {"type": "text", "text": text, "align": "center", "bold": True, "width": 2},
            {"type": "separator"},
            {"type": "text", "text": f"1 x Margherita        9.50{copies_note}"},
            {"type": "qr", "data": "https://example.com/r/1042", "size": 4},
            {"type": "cut"},
        ],
    }


def submit(
    http: httpx.Client,
    branch_id: str,
    printer_id: str = "POS-80C",
    content: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    **fields: Any,
) -> httpx.Response:
    body = {
        "branch_id": branch_id,
        "printer_id": printer_id,
        "content": content or receipt(),
        **fields,
    }
    headers = {"Idempotency-Key": key} if key else {}
    return http.post("/v1/jobs", json=body, headers=headers)


def wait_state(
    http: httpx.Client, job_id: str, states: set[str] | None = None, timeout: float = 15.0
) -> dict[str, Any]:
    """Poll the job until it is in one of ``states`` (default: any final state)."""
    wanted = states or FINAL
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.update(http.get(f"/v1/jobs/{job_id}").json())
        return dict(last) if last["state"] in wanted else None

    return eventually(
        reached,
        timeout=timeout,
        interval=0.05,
        what=lambda: f"job {job_id} in {sorted(wanted)} (still {last.get('state')}: {last})",
    )
