"""Printers belong to agents: a claim to another agent's printer is ignored (and shown), a
provisioning that names one is refused, and the owners survive an API restart, even one while the
broker is away (503 BROKER_UNAVAILABLE and queued jobs, never 404)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from broker import Credentials, Provisioner
from cloud_api._registry import Owner, Registry
from cloud_api.store import Store
from cloud_api.store._printers import PrinterTable
from printermaster.stack import Stack
from protocol import AgentStatus, Presence, PrinterState, encode, presence_topic, status_topic

from ._mqtt import Probe
from ._wait import eventually
from .conftest import AgentFactory, job_files, make_stack, unique_id


def _presence(branch: str, agent: str, printers: list[str], session: int = 1) -> bytes:
    return encode(
        Presence(
            state="online",
            session=session,
            branch_id=branch,
            agent_id=agent,
            printers=printers,
            at=time.time(),
        )
    )


def _status(branch: str, agent: str, printers: list[str], session: int = 1) -> bytes:
    return encode(
        AgentStatus(
            branch_id=branch,
            agent_id=agent,
            session=session,
            printers=[PrinterState(name=p) for p in printers],
            at=time.time(),
        )
    )


# --- the registry alone -------------------------------------------------------------------------


def test_registry_ignores_a_claim_to_another_agents_printer() -> None:
    registry = Registry()
    learned: list[tuple[str, str, str, bool]] = []
    registry.on_owner.append(lambda *change: learned.append(change))
    registry.on_presence("b1", "a1", _presence("b1", "a1", ["P1"]))
    registry.on_status("b1", "a1", _status("b1", "a1", ["P1"]), 90)
    assert learned == [("b1", "P1", "a1", True)]
    for _ in range(3):  # the hijacker insists: still refused, counted once
        registry.on_presence("b1", "a2", _presence("b1", "a2", ["P1", "P2"]))
        registry.on_status("b1", "a2", _status("b1", "a2", ["P1", "P2"]), 90)
    owner = registry.find_printer("b1", "P1")
    assert owner is not None and owner.agent_id == "a1"
    hijacker = registry.agent("b1", "a2")
    assert hijacker is not None and hijacker.refused == {"P1"}
    found = registry.find_printer("b1", "P2")
    assert found is not None and found.agent_id == "a2"  # a free printer is learned
    # another branch's printer of the same name is another printer
    registry.on_status("b2", "a1", _status("b2", "a1", ["P1"]), 90)
    assert registry.agent("b2", "a1") is not None and not registry.agent("b2", "a1").refused  # type: ignore[union-attr]


def test_registry_knows_stored_owners_before_any_message() -> None:
    registry = Registry()
    registry.load_owners([("b1", "P1", Owner("a1", provisioned=True))])
    record = registry.find_printer("b1", "P1")
    assert record is not None and record.agent_id == "a1" and not record.online()
    registry.on_status("b1", "a2", _status("b1", "a2", ["P1"]), 90)
    assert registry.agent("b1", "a2").refused == {"P1"}  # type: ignore[union-attr]


# --- against the real broker and API ------------------------------------------------------------


def test_printer_hijack_is_refused(stack: Stack, start_agent: AgentFactory) -> None:
    """Agent B of the same branch announces agent A's printer in its retained presence and
    status: A keeps the printer's jobs, the claim shows as a problem, one log line says why."""
    real = start_agent()
    branch = real.branch_id
    with stack.client(timeout=30) as http:
        assert http.post(f"/v1/branches/{branch}/printers/POS-80C/test").status_code == 200
        hijacker_id = unique_id("a")

        async def provision() -> Credentials:
            async with stack.admin() as admin:
                return await Provisioner(admin).add_agent(branch, hijacker_id)

        hijacker = Probe(stack.mqtt_port, asyncio.run(provision()))
        assert hijacker.connect() == 0
        try:
            for topic, payload in (
                (presence_topic(branch, hijacker_id), _presence(branch, hijacker_id, ["POS-80C"])),
                (status_topic(branch, hijacker_id), _status(branch, hijacker_id, ["POS-80C"])),
            ):
                assert hijacker.publish(topic, payload, retain=True) in (0, 16)

            def refused() -> bool:
                agents = http.get(f"/v1/branches/{branch}/agents").json()
                return any(
                    a["agent_id"] == hijacker_id and a["refused_printers"] == ["POS-80C"]
                    for a in agents
                )

            eventually(refused, timeout=15, interval=0.05, what="the hijacker's claim refused")
            fleet = http.get("/v1/fleet").json()
            (summary,) = [b for b in fleet["branches"] if b["branch_id"] == branch]
            assert summary["printer_conflicts"] == 1
            printers = http.get(f"/v1/branches/{branch}/printers").json()
            assert [p["agent_id"] for p in printers] == [real.agent_id]
            before = len(job_files(real))
            response = http.post(f"/v1/branches/{branch}/printers/POS-80C/test")
            assert response.status_code == 200, response.text
            assert response.json()["agent_id"] == real.agent_id
            assert len(job_files(real)) == before + 1
            assert hijacker.messages == []  # no request, no ticket content reached it
            log = (stack.state_dir / "api.log").read_text()
            assert log.count(f"ignoring agent {branch}/{hijacker_id}'s claim") == 1
        finally:
            hijacker.close()


def test_provisioning_refuses_a_printer_another_agent_owns(stack: Stack) -> None:
    branch = unique_id("b")
    first, second = unique_id("a"), unique_id("a")
    printers = [{"kind": "virtual", "name": "POS-80C"}]
    with stack.client(timeout=30) as http:
        url = f"/v1/branches/{branch}/agents"
        assert http.post(url, json={"agent_id": first, "printers": printers}).status_code == 201
        taken = http.post(url, json={"agent_id": second, "printers": printers})
        assert taken.status_code == 409, taken.text
        assert "POS-80C (agent " + first in taken.json()["error"]["message"]
        # the refused agent was not created at all; once the owner is revoked the name is free
        assert http.delete(f"{url}/{second}").status_code == 404
        assert http.delete(f"{url}/{first}").status_code == 204
        assert http.post(url, json={"agent_id": second, "printers": printers}).status_code == 201
        assert http.delete(f"{url}/{second}").status_code == 204


def test_api_restarted_while_the_broker_is_down_knows_its_printers(
    tmp_path: Path,
) -> None:
    """The owners are in the store: a test print answers 503 BROKER_UNAVAILABLE at once (not
    404) and a job is stored queued, then printed when the broker is back."""
    with make_stack(tmp_path) as stack:
        agent = stack.add_agent("b1", "a1", ["POS-80C"])
        stack.wait_agent("b1", "a1")
        with stack.client(timeout=30) as http:
            assert http.post("/v1/branches/b1/printers/POS-80C/test").status_code == 200
        assert stack.api is not None
        stack.api.stop()
        stack.broker.stop()
        stack.start_api(timeout=40, ready=False)
        with stack.client(timeout=30) as http:
            test = http.post("/v1/branches/b1/printers/POS-80C/test")
            assert test.status_code == 503, test.text
            assert test.json()["error"]["code"] == "BROKER_UNAVAILABLE"
            assert test.json()["error"]["retryable"] is True
            job = http.post(
                "/v1/jobs",
                json={
                    "branch_id": "b1",
                    "printer_id": "POS-80C",
                    "content": {"type": "raw", "data": "aGVsbG8="},
                },
            )
            assert job.status_code == 202, job.text
            assert job.json()["state"] == "queued"
            job_id = job.json()["id"]
            stack.broker.start()

            def printed() -> bool:
                try:
                    return bool(http.get(f"/v1/jobs/{job_id}").json()["state"] == "printed")
                except httpx.TransportError:
                    return False

            eventually(printed, timeout=60, interval=0.05, what="the queued job printed")
        assert job_id in [f.stem for f in job_files(agent)]


async def test_the_printer_table_on_both_backends(store: Store) -> None:
    table = PrinterTable(store)
    await table.create()
    await table.create()  # a second instance starting finds it made
    assert await table.learn("b1", "P1", "a1") == "a1"
    assert await table.learn("b1", "P1", "a2") == "a1"  # the first claim stands
    assert await table.provision("b1", "a2", ["P1", "P2"]) == {"P1": "a1"}
    assert await table.owner("b1", "P2") is None  # all or nothing
    assert await table.provision("b1", "a1", ["P1", "P2"]) == {}
    rows = {(r.printer_id, r.agent_id, r.provisioned) for r in await table.all()}
    assert rows == {("P1", "a1", True), ("P2", "a1", True)}
    await table.release("b1", "a2")  # another agent's release frees nothing
    assert len(await table.all()) == 2
    await table.release("b1", "a1", "P2")
    await table.release("b1", "a1")
    assert await table.all() == []
