"""Several API instances on one PostgreSQL: each holds a lease; when one dies (kill -9, never
restarted), a survivor adopts its in-flight jobs and drains its MQTT session, and every job
reaches its true final state — none printed twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_api.store import Store
from printermaster.stack import Stack

from ._wait import eventually, eventually_async
from .conftest import make_stack, unique_id
from .pg import postgres_url

FINAL = {"printed", "failed", "expired", "cancelled", "outcome_unknown"}


async def test_one_survivor_wins_the_claim_on_an_expired_lease(store: Store) -> None:
    from cloud_api.instances import Leases

    leases = await Leases.open(store)
    await Leases.open(store)  # a second instance opening the same table
    now = time.time()
    await leases.renew("api-1", now, 5.0, started=True)
    await leases.renew("api-2", now, 5.0, started=True)
    assert not await leases.claim("api-1", "api-2", now)  # alive: nobody may adopt it
    later = now + 6
    wins = [await leases.claim("api-1", s, later) for s in ("api-2", "api-3", "api-2")]
    assert wins == [True, False, False]
    (lease,) = [x for x in await leases.all() if x.instance_id == "api-1"]
    assert lease.adopted_by == "api-2" and not lease.alive(later)
    await leases.renew("api-1", later, 5.0, started=True)  # it came back: alive, not adopted
    (lease,) = [x for x in await leases.all() if x.instance_id == "api-1"]
    assert lease.adopted_by is None and lease.alive(later)
    await leases.release("api-1", later)
    assert await leases.claim("api-1", "api-2", later)  # a graceful stop: adopted at once
    # the adopter dies before it finished: adopting it opens its own claims again
    await leases.renew("api-2", now, 5.0, started=False)
    assert await leases.claim("api-2", "api-3", later)
    assert not await leases.claim("api-1", "api-3", later)
    assert await leases.reopen_adoptions_of("api-2", later) == 1
    assert await leases.claim("api-1", "api-3", later)
    await leases.unclaim("api-1", "api-3")  # that adoption failed: tried again
    assert await leases.claim("api-1", "api-3", later)
    assert await leases.forget_adopted(later) == 0  # kept for the record a while
    assert await leases.forget_adopted(later + 1) == 2
    assert [x.instance_id for x in await leases.all()] == []


async def test_two_processes_under_one_instance_id_are_reported(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from cloud_api import ApiSettings
    from cloud_api._settings import MqttClientSettings
    from cloud_api.instances import InstanceLeases

    settings = ApiSettings(
        api_token="t",
        mqtt=MqttClientSettings(username="u", password="p"),
        lease_ttl=1.0,
        lease_renew=0.05,
    )

    async def nothing(instance_id: str) -> list[Any]:
        return []

    one = InstanceLeases(settings, store, [], nothing)
    tasks = [asyncio.create_task(one.run())]
    try:
        started = time.monotonic()

        async def leased() -> bool:
            return bool((await one.check())[0])

        await eventually_async(leased, timeout=10)
        assert "another process" not in caplog.text  # alone: no complaint
        twin = InstanceLeases(settings, store, [], nothing)
        tasks.append(asyncio.create_task(twin.run()))
        await eventually_async(
            lambda: "another process runs as instance api-1" in caplog.text,
            timeout=10 - (time.monotonic() - started),
            what=lambda: caplog.text,
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _ticket(n: int) -> dict[str, object]:
    return {"type": "document", "blocks": [{"type": "text", "text": f"ticket {n}"}]}


def _wait_online(url: str, token: str, branch: str, agent: str) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        eventually(
            lambda: any(
                a["agent_id"] == agent and a["online"]
                for a in http.get(f"/v1/branches/{branch}/agents").json()
            ),
            timeout=15,
            interval=0.05,
            what=f"agent {agent} online at {url}",
        )


@pytest.mark.postgres
def test_a_survivor_finishes_the_jobs_of_an_instance_killed_mid_flow(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    stack: Stack
    with make_stack(tmp_path, store_url=postgres_url(request)) as stack:
        survivor = stack.add_api("api-2")
        agent = stack.add_agent(unique_id("b"), unique_id("a"), ["POS-80C"])
        printer_dir = agent.printer_dir("POS-80C")
        printer_dir.mkdir(parents=True, exist_ok=True)
        (printer_dir / "state.json").write_text(json.dumps({"delay_s": 0.2}))
        for url in (stack.api_url, survivor.url):
            _wait_online(url, stack.api_token, agent.branch_id, agent.agent_id)
        job_ids = []
        with stack.client(timeout=10) as first:
            for n in range(40):
                answer = first.post(
                    "/v1/jobs",
                    json={
                        "branch_id": agent.branch_id,
                        "printer_id": "POS-80C",
                        "content": _ticket(n),
                    },
                )
                assert answer.status_code == 202, answer.text
                job_ids.append(answer.json()["id"])
        # kill -9 while the printer works through them: jobs sent, accepted, printing
        eventually(
            lambda: len(list(printer_dir.glob("*.prn"))) >= 3,
            timeout=20,
            what=agent.process.log_tail,
        )
        assert stack.api is not None
        stack.api.kill()
        killed = time.monotonic()
        states: dict[str, str] = {}
        headers = {"Authorization": f"Bearer {stack.api_token}"}
        with httpx.Client(base_url=survivor.url, headers=headers, timeout=10) as second:

            def all_final() -> bool:
                states.update({j: second.get(f"/v1/jobs/{j}").json()["state"] for j in job_ids})
                return set(states.values()) <= FINAL

            with contextlib.suppress(AssertionError):  # the assertion below names the states
                eventually(all_final, timeout=15, interval=0.2)
            took = time.monotonic() - killed
        assert set(states.values()) == {"printed"}, (Counter(states.values()), took)
        journal = Counter((printer_dir / "journal.log").read_text().split())
        assert set(journal) == set(job_ids) and set(journal.values()) == {1}, journal
        assert sorted(p.stem for p in printer_dir.glob("*.prn")) == sorted(job_ids)
        eventually(
            lambda: "adopted instance api-1" in (tmp_path / "api-2.log").read_text(),
            timeout=15,
            interval=0.1,
            what=lambda: (tmp_path / "api-2.log").read_text()[-3000:],
        )
        with httpx.Client(base_url=survivor.url, headers=headers, timeout=10) as second:
            leases = {v["instance_id"]: v for v in second.get("/v1/instances").json()}
        assert leases["api-1"]["adopted_by"] == "api-2" and not leases["api-1"]["alive"]
        assert leases["api-2"]["alive"] and leases["api-2"]["this"]
        print(f"every job final {took:.1f} s after the kill")
