"""API keys shared by every API instance through the store: a key created, rotated or revoked
on one instance counts on every other at once — worker processes on SQLite, separate API
processes on PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from ._wait import eventually
from .conftest import make_stack, unique_id
from .pg import postgres_url


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.skipif(sys.platform == "win32", reason="workers need a Unix system")
def test_a_key_created_on_one_worker_works_on_every_worker(tmp_path: Path) -> None:
    with make_stack(tmp_path, workers=2) as stack:
        branch, chain = unique_id("b"), unique_id("c")
        seen: set[str] = set()
        for _ in range(12):  # fresh connections land on either worker
            with stack.client(timeout=10) as admin:
                created = admin.post("/v1/api-keys", json={"chain": chain, "branches": [branch]})
                assert created.status_code == 201, created.text
                key = created.json()["key"]
                listed = {k["key_id"] for k in admin.get("/v1/api-keys").json()}
                assert created.json()["key_id"] in listed
            for _ in range(4):
                with httpx.Client(base_url=stack.api_url, timeout=10) as http:
                    seen.add(http.get("/healthz").json()["instance_id"])
                    answer = http.get(f"/v1/branches/{branch}/agents", headers=_bearer(key))
                    assert answer.status_code == 200, answer.text
        assert seen == {"api-1.1", "api-1.2"}


@pytest.mark.postgres
def test_a_key_created_on_one_api_process_works_on_the_other_at_once(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with make_stack(tmp_path, store_url=postgres_url(request)) as stack:
        second = stack.add_api("api-2")
        branch = unique_id("b")
        with (
            stack.client(timeout=10) as one,
            httpx.Client(base_url=second.url, timeout=10) as two,
        ):
            admin = _bearer(stack.api_token)
            created = one.post("/v1/api-keys", json={"chain": "c", "branches": [branch]})
            assert created.status_code == 201, created.text
            key, key_id = created.json()["key"], created.json()["key_id"]
            agents = f"/v1/branches/{branch}/agents"
            assert two.get(agents, headers=_bearer(key)).status_code == 200
            # rotated on the second: both keys work on the first during the grace period
            rotated = two.post(f"/v1/api-keys/{key_id}/rotate", json={"grace": 600}, headers=admin)
            assert rotated.status_code == 201, rotated.text
            assert rotated.headers["cache-control"] == "no-store"
            new_key, new_id = rotated.json()["key"], rotated.json()["key_id"]
            assert one.get(agents, headers=_bearer(new_key)).status_code == 200
            assert one.get(agents, headers=_bearer(key)).status_code == 200
            listed = {k["key_id"]: k for k in one.get("/v1/api-keys").json()}
            assert listed[key_id]["replaced_by"] == new_id and listed[key_id]["expires_at"]
            # revoked on the second: refused by the first at once
            assert two.delete(f"/v1/api-keys/{key_id}", headers=admin).status_code == 200
            assert one.get(agents, headers=_bearer(key)).status_code == 401
            # a rotation with no grace ends the old key at once, on both
            again = one.post(f"/v1/api-keys/{new_id}/rotate", json={"grace": 0})
            assert again.status_code == 201, again.text
            assert two.get(agents, headers=_bearer(new_key)).status_code == 401
            assert two.get(agents, headers=_bearer(again.json()["key"])).status_code == 200
            # a key with an expiry: refused by both once it passed
            short = one.post(
                "/v1/api-keys", json={"chain": "c", "branches": [branch], "expires_in": 1}
            )
            assert short.status_code == 201 and short.json()["expires_at"], short.text
            short_key = short.json()["key"]
            assert two.get(agents, headers=_bearer(short_key)).status_code == 200
            eventually(
                lambda: two.get(agents, headers=_bearer(short_key)).status_code == 401,
                timeout=15,
                interval=0.1,
            )
            assert one.get(agents, headers=_bearer(short_key)).status_code == 401
            bad = one.post(
                "/v1/api-keys", json={"chain": "c", "branches": [branch], "expires_in": 0}
            )
            assert bad.json()["error"]["code"] == "INVALID_REQUEST", bad.text
