"""Dashboard API keys: stored hashed, scoped to a chain's branches (404 elsewhere), 401
without a valid key, revocable, with an expiry and a rotation; kept in the store (SQLite,
PostgreSQL) that every API instance shares."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from cloud_api import ApiError
from cloud_api.apikeys import ApiKeyService, DbApiKeyStore, MemoryApiKeyStore, import_key_file
from cloud_api.store import Store
from printermaster.stack import Stack

from ._wait import eventually_async
from .conftest import AgentFactory, job_files, unique_id


def test_keys_are_hashed_checked_and_revocable() -> None:
    async def run() -> None:
        service = ApiKeyService(MemoryApiKeyStore())
        record, key = await service.create("chain-x", ["b2", "b1", "b1"], "dashboard")
        assert key.startswith(f"pmk_{record.key_id}_") and len(key) > 50
        assert record.branches == ["b1", "b2"] and key not in repr(record)
        assert await service.authenticate(key) == record
        for wrong in (key + "x", key[:-1], f"pmk_{record.key_id}_", "pmk_", "", key.upper()):
            assert await service.authenticate(wrong) is None, wrong
        with pytest.raises(ApiError) as taken:  # a branch belongs to one chain
            await service.create("chain-y", ["b2"])
        assert taken.value.code == "CONFLICT"
        with pytest.raises(ApiError):
            await service.create("chain-x", ["../etc"])
        await service.revoke(record.key_id)
        assert await service.authenticate(key) is None
        await service.create("chain-y", ["b2"])  # free again once chain X's key is revoked

    asyncio.run(run())


async def test_keys_live_in_the_store_hashed_with_expiry_and_rotation(store: Store) -> None:
    keys = await DbApiKeyStore.open(store)
    service = ApiKeyService(keys)
    record, key = await service.create("c", ["b"], "dash")
    short, short_key = await service.create("c", ["b"], expires_in=0.3)
    assert short.expires_at is not None and short.expires_at > time.time()
    # another instance's service on the same database sees them at once
    other = ApiKeyService(await DbApiKeyStore.open(store))
    assert await other.authenticate(key) == record
    assert await other.authenticate(short_key) == short
    rows = await store._fetch("SELECT * FROM api_keys", [])
    assert len(rows) == 2 and not any(key in str(r) or short_key in str(r) for r in rows)
    started = time.monotonic()

    async def refused(key: str) -> bool:
        return await other.authenticate(key) is None

    await eventually_async(lambda: refused(short_key), timeout=10, interval=0.05)  # once expired
    new, old, new_key = await service.rotate(record.key_id, grace=0.3)
    assert old.replaced_by == new.key_id and new.branches == ["b"] and new.chain == "c"
    assert await other.authenticate(new_key) == new
    assert await other.authenticate(key) is not None  # the old key, within its grace period
    with pytest.raises(ApiError) as twice:
        await other.rotate(record.key_id, grace=10)
    assert twice.value.code == "CONFLICT"
    await eventually_async(
        lambda: refused(key), timeout=10 - (time.monotonic() - started), interval=0.05
    )
    assert await other.authenticate(new_key) == new  # the new one lives on
    await other.revoke(new.key_id)
    assert await service.authenticate(new_key) is None
    assert [r.key_id for r in await service.list()] == [record.key_id, short.key_id, new.key_id]


async def test_a_key_file_of_an_earlier_version_is_imported_once(
    store: Store, tmp_path: Path
) -> None:
    service = ApiKeyService(MemoryApiKeyStore())
    record, key = await service.create("c", ["b"])
    path = tmp_path / "api-keys.json"
    path.write_bytes(msgspec.json.encode({"version": 1, "keys": [record]}))
    for _ in range(2):
        imported = ApiKeyService(await import_key_file(store, str(path)))
        assert await imported.authenticate(key) == record
    assert len(await imported.list()) == 1


def _create_key(http: httpx.Client, chain: str, branches: list[str]) -> str:
    response = http.post("/v1/api-keys", json={"chain": chain, "branches": branches})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_a_chain_key_sees_only_its_branches(stack: Stack, start_agent: AgentFactory) -> None:
    mine = start_agent()
    theirs = start_agent()
    with stack.client(timeout=10) as admin:
        key = _create_key(admin, unique_id("chain"), [mine.branch_id])
        _create_key(admin, unique_id("chain"), [theirs.branch_id])
        listed = admin.get("/v1/api-keys").json()
        assert all("key" not in k and "sha256" not in k for k in listed)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=10) as http:
        own = http.post(f"/v1/branches/{mine.branch_id}/printers/POS-80C/test")
        assert own.status_code == 200, own.text
        assert http.get(f"/v1/branches/{mine.branch_id}/agents").json()[0]["agent_id"]
        b = theirs.branch_id
        other_routes = [
            ("POST", f"/v1/branches/{b}/printers/POS-80C/test", None),
            ("GET", f"/v1/branches/{b}/agents", None),
            ("GET", f"/v1/branches/{b}/printers", None),
            ("POST", f"/v1/branches/{b}/agents", {"agent_id": "x"}),
            ("POST", f"/v1/branches/{b}/agents/{theirs.agent_id}/rotate-credentials", None),
            ("DELETE", f"/v1/branches/{b}/agents/{theirs.agent_id}", None),
            ("POST", f"/v1/branches/{b}/debug-access", None),
            ("GET", "/v1/branches/no-such-branch/agents", None),
        ]
        for method, url, body in other_routes:
            response = http.request(method, url, json=body)
            assert response.status_code == 404, (method, url, response.text)
            assert response.json()["error"]["code"] == "NOT_FOUND"
        # admin-only routes on its own branch and key management: 403
        for method, url, body in (
            ("POST", f"/v1/branches/{mine.branch_id}/agents", {"agent_id": "x"}),
            ("DELETE", f"/v1/branches/{mine.branch_id}/agents/{mine.agent_id}", None),
            ("GET", "/v1/api-keys", None),
            ("POST", "/v1/api-keys", {"chain": "c", "branches": [b]}),
        ):
            response = http.request(method, url, json=body)
            assert response.status_code == 403, (method, url, response.text)
            assert response.json()["error"]["code"] == "FORBIDDEN"
    assert job_files(theirs) == [] and len(job_files(mine)) == 1
    stack.wait_agent(mine.branch_id, mine.agent_id)  # the 403 DELETE did not revoke it


def test_no_key_or_a_revoked_key_is_401(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent()
    url = f"{stack.api_url}/v1/branches/{agent.branch_id}/printers/POS-80C/test"
    with stack.client(timeout=10) as admin:
        key = _create_key(admin, unique_id("chain"), [agent.branch_id])
        key_id = key.split("_")[1]
        assert httpx.post(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert admin.delete(f"/v1/api-keys/{key_id}").json()["revoked_at"] > 0
    for headers in ({}, {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {key}x"}):
        response = httpx.post(url, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"
    assert len(job_files(agent)) == 1
