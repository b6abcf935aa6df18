"""Presence and health you can trust: births, wills, sessions, heartbeats and their expiry,
against a real Mosquitto, the real API and real agents. Figures are printed (run with ``-s``)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import tomllib
import tracemalloc
from typing import Any

import httpx
import psutil
import pytest

from branch_agent import ConfigError, parse_config
from broker import Credentials
from cloud_api._registry import Liveness, Registry
from cloud_api.fleet import summarize
from printermaster._swarm import Swarm
from printermaster.stack import AgentHandle, Stack
from protocol import AgentStatus, Presence, PrinterState, encode, presence_topic, status_topic

from ._mqtt import Probe
from ._wait import eventually, eventually_async
from .conftest import AgentFactory, unique_id

PRINTER = "POS-80C"


# --- the registry's rules, without a broker ------------------------------------------------


def _presence(state: str, session: int, agent: str = "a1") -> bytes:
    return encode(Presence(state=state, session=session, branch_id="b1", agent_id=agent))  # type: ignore[arg-type]


def _status(session: int, agent: str = "a1", at: float = 1.0, **printer: Any) -> bytes:
    printers = [PrinterState(name=f"P-{agent}", **printer)]
    return encode(
        AgentStatus(branch_id="b1", agent_id=agent, session=session, printers=printers, at=at)
    )


def test_registry_ignores_a_will_older_than_the_current_session() -> None:
    registry = Registry()
    registry.on_presence("b1", "a1", _presence("online", 2))
    registry.on_status("b1", "a1", _status(2), 90)
    registry.on_presence("b1", "a1", _presence("offline", 1))  # late will of session 1
    record = registry.agent("b1", "a1")
    assert record is not None and record.liveness() is Liveness.ONLINE
    registry.on_presence("b1", "a1", _presence("offline", 2))  # its own will counts
    assert record.liveness() is Liveness.OFFLINE


def test_registry_trusts_a_newer_status_over_a_retained_stale_will() -> None:
    """After a late will overwrote the retained presence, a fresh API instance reads the stale
    will and the newer session's status: the agent is online."""
    registry = Registry()
    registry.on_presence("b1", "a1", _presence("offline", 1))
    registry.on_status("b1", "a1", _status(2), 90)
    record = registry.agent("b1", "a1")
    assert record is not None and record.online()
    assert registry.agent("b1", "a1") is record and record.session == 2


def test_registry_ages_out_an_expired_heartbeat_by_itself() -> None:
    registry = Registry()
    registry.on_presence("b1", "a1", _presence("online", 1))
    registry.on_status("b1", "a1", _status(1), 3)
    record = registry.agent("b1", "a1")
    assert record is not None and record.status_expires is not None
    assert record.online(record.status_expires - 0.01)
    assert record.liveness(record.status_expires) is Liveness.EXPIRED
    # A retained copy of the same snapshot, redelivered later, does not extend the deadline.
    deadline = record.status_expires
    registry.on_status("b1", "a1", _status(1), 3)
    assert record.status_expires == deadline
    registry.on_status("b1", "a1", _status(1, at=2.0), 3)  # a real heartbeat does
    assert record.status_expires > deadline


def test_registry_needs_a_birth_and_a_status_of_the_same_session() -> None:
    registry = Registry()
    registry.on_status("b1", "a1", _status(1), 90)
    record = registry.agent("b1", "a1")
    assert record is not None and record.liveness() is Liveness.UNKNOWN  # never born
    registry.on_presence("b1", "a1", _presence("online", 2))
    assert record.liveness() is Liveness.UNKNOWN  # born again; its status is still session 1
    registry.on_status("b1", "a1", _status(2), 90)
    assert record.online()
    registry.on_presence("b1", "a1", b"")  # retained presence cleared: agent removed
    assert registry.agent("b1", "a1") is None and registry.find_printer("b1", "P-a1") is None


def test_fleet_summary_counts_and_pages() -> None:
    registry = Registry()
    states: list[dict[str, Any]] = [
        {"paper": "ok", "cover_open": False},
        {"paper": "near_end", "cover_open": False},
        {"paper": "out", "cover_open": True},
        {"paper": "ok", "online": False},
    ]
    for branch in ("b1", "b2", "b3"):
        for i, state in enumerate(states):
            agent = f"a{i}"
            payload = _status(1, agent=agent, **state).replace(b'"b1"', f'"{branch}"'.encode())
            registry.on_presence(branch, agent, _presence("online", 1, agent))
            registry.on_status(branch, agent, payload, 90)
    registry.on_presence("b3", "a0", _presence("offline", 1, "a0"))  # b3's healthy agent dies
    summary = summarize(registry, may_see=lambda b: b != "b2", limit=1)
    totals = summary.totals
    assert (totals.branches, totals.agents_online, totals.agents_offline) == (2, 7, 1)
    p = totals.printers
    assert (p.total, p.ready, p.warning, p.down) == (8, 1, 2, 5)
    assert (p.paper_out, p.cover_open, p.printer_offline, p.agent_offline) == (2, 2, 2, 1)
    assert p.paper_near_end == 2
    assert [b.branch_id for b in summary.branches] == ["b1"] and summary.next_after == "b1"
    rest = summarize(registry, may_see=lambda b: b != "b2", after="b1")
    assert [b.branch_id for b in rest.branches] == ["b3"] and rest.next_after is None
    assert rest.branches[0].agents_offline == 1 and rest.branches[0].printers.ready == 0


def test_status_expiry_is_configurable_and_checked() -> None:
    base = 'branch_id = "b1"\nagent_id = "a1"\ndata_dir = "/tmp/x"\n'
    mqtt_part = '[mqtt]\nusername = "u"\npassword = "p"\n'
    assert parse_config(base + "heartbeat_interval = 2.0\n" + mqtt_part).heartbeat_expiry == 6
    config = parse_config(base + "heartbeat_interval = 2.0\nstatus_expiry = 4.5\n" + mqtt_part)
    assert config.heartbeat_expiry == 5
    with pytest.raises(ConfigError, match="status_expiry"):
        parse_config(base + "heartbeat_interval = 5.0\nstatus_expiry = 5\n" + mqtt_part)
    with pytest.raises(ConfigError, match="> 0"):
        parse_config(base + "heartbeat_interval = 0\n" + mqtt_part)


# --- one agent process against the session's broker and API --------------------------------


def _agent_view(stack: Stack, handle: AgentHandle) -> dict[str, Any]:
    with stack.client(timeout=5) as http:
        agents = http.get(f"/v1/branches/{handle.branch_id}/agents").json()
    (view,) = [a for a in agents if a["agent_id"] == handle.agent_id]
    return dict(view)


def _printer_view(stack: Stack, handle: AgentHandle, http: httpx.Client) -> dict[str, Any]:
    printers = http.get(f"/v1/branches/{handle.branch_id}/printers").json()
    (view,) = [p for p in printers if p["printer_id"] == PRINTER]
    return dict(view)


def test_kill_9_is_offline_fast_then_503_then_back_online(
    stack: Stack, start_agent: AgentFactory
) -> None:
    keepalive = 2
    agent = start_agent(mqtt={"keepalive": keepalive})
    session = _agent_view(stack, agent)["session"]
    started = time.monotonic()
    agent.process.kill()
    stack.wait_agent(agent.branch_id, agent.agent_id, online=False, timeout=10)
    offline_after = time.monotonic() - started
    print(f"\nkill -9: offline in the API after {offline_after * 1000:.0f} ms")
    assert offline_after <= 1.5 * keepalive + 1
    assert _agent_view(stack, agent)["state"] == "offline"  # the broker sent its will

    with stack.client() as http:
        t0 = time.perf_counter()
        response = http.post(f"/v1/branches/{agent.branch_id}/printers/{PRINTER}/test")
        elapsed = time.perf_counter() - t0
    print(f"test print to the dead agent: {response.status_code} in {elapsed * 1000:.1f} ms")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "AGENT_OFFLINE"
    assert elapsed < 0.1

    started = time.monotonic()
    agent.process.start()
    stack.wait_agent(agent.branch_id, agent.agent_id, timeout=5)
    print(f"restarted agent online after {time.monotonic() - started:.2f} s")
    assert _agent_view(stack, agent)["session"] > session


def test_graceful_stop_is_offline_within_a_second(stack: Stack, start_agent: AgentFactory) -> None:
    agent = start_agent()
    started = time.monotonic()
    agent.process.stop()  # SIGTERM: the agent publishes its offline presence, then exits
    stack.wait_agent(agent.branch_id, agent.agent_id, online=False, timeout=5)
    elapsed = time.monotonic() - started
    print(f"\ngraceful stop: offline after {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0
    assert _agent_view(stack, agent)["state"] == "offline"


def test_a_late_will_of_an_older_session_does_not_mark_the_agent_offline(
    stack: Stack, start_agent: AgentFactory
) -> None:
    agent = start_agent()
    session = _agent_view(stack, agent)["session"]
    creds = tomllib.loads(agent.config_path.read_text())["mqtt"]
    debug = stack.creds("debug")
    watcher = Probe(stack.mqtt_port, debug, unique_id("watch-"))
    assert watcher.connect() == 0
    watcher.subscribe(presence_topic(agent.branch_id, agent.agent_id))
    watcher.subscribe(status_topic(agent.branch_id, agent.agent_id))
    try:
        # A connection of the agent's previous session, with its will, dies only now: the broker
        # delivers the will of session N-1 after the birth of session N.
        stale = Presence(
            state="offline",
            session=session - 1,
            branch_id=agent.branch_id,
            agent_id=agent.agent_id,
            reason="connection lost",
        )
        # (every login is bound to its client id: the agent's doctor login, same password and
        # role, plays the second connection)
        old = Probe(
            stack.mqtt_port,
            Credentials(f"{creds['username']}:doctor", creds["password"]),
            will=(presence_topic(agent.branch_id, agent.agent_id), encode(stale)),
        )
        assert old.connect() == 0
        old.crash()
        watcher.wait_for(lambda m: json.loads(m.payload).get("session") == session - 1)
        # The API reads presence in broker order: once it shows a status change made after the
        # will went out, it has handled the will too.
        (agent.printer_dir(PRINTER) / "state.json").write_text('{"paper": "near_end"}')
        with stack.client() as http:

            def status_handled() -> bool:
                if _printer_view(stack, agent, http)["state"]["paper"] == "near_end":
                    return True
                if not _agent_view(stack, agent)["online"]:
                    pytest.fail("stale will marked the agent offline")
                return False

            eventually(status_handled, timeout=3)
            view = _agent_view(stack, agent)
            assert view["online"] and view["session"] == session
            assert http.post(f"/v1/branches/{agent.branch_id}/printers/{PRINTER}/test").is_success

        # The stale will is now the retained presence; a fresh API instance reading the retained
        # snapshot must still count the agent online (its status is of the newer session).
        fresh = Probe(stack.mqtt_port, debug, unique_id("fresh-"))
        assert fresh.connect() == 0
        fresh.subscribe(presence_topic(agent.branch_id, agent.agent_id))
        fresh.subscribe(status_topic(agent.branch_id, agent.agent_id))
        try:
            fresh.wait_for(lambda m: m.topic.endswith("/status"))
            fresh.wait_for(lambda m: m.topic.endswith("/presence"))
            retained = {m.topic.rsplit("/", 1)[1]: m for m in fresh.messages}
        finally:
            fresh.close()
        assert json.loads(retained["presence"].payload)["session"] == session - 1
        registry = Registry()
        registry.on_presence(agent.branch_id, agent.agent_id, retained["presence"].payload)
        expiry = retained["status"].properties.MessageExpiryInterval  # type: ignore[union-attr]
        registry.on_status(agent.branch_id, agent.agent_id, retained["status"].payload, expiry)
        record = registry.agent(agent.branch_id, agent.agent_id)
        assert record is not None and record.online()
    finally:
        watcher.close()

    # The agent's own will (its current session) still takes it offline.
    agent.process.kill()
    stack.wait_agent(agent.branch_id, agent.agent_id, online=False, timeout=5)


def test_paper_out_and_cover_open_reach_the_api_within_a_second(
    stack: Stack, start_agent: AgentFactory
) -> None:
    agent = start_agent()
    state_file = agent.printer_dir(PRINTER) / "state.json"
    url = f"/v1/branches/{agent.branch_id}/printers/{PRINTER}/test"
    cases = [
        ({"paper": "out"}, "PAPER_OUT", "paper_out"),
        ({"cover_open": True}, "COVER_OPEN", "cover_open"),
        ({"online": False}, "PRINTER_OFFLINE", "printer_offline"),
    ]
    with stack.client() as http:
        for state, code, problem in cases:
            started = time.monotonic()
            state_file.write_text(json.dumps(state))

            def shown(problem: str = problem) -> dict[str, Any] | None:
                view = _printer_view(stack, agent, http)
                return view if problem in view["problems"] else None

            view = eventually(shown, timeout=1.0, interval=0.01, what=f"{problem} in the API")
            print(f"\n{problem}: in the API after {(time.monotonic() - started) * 1000:.0f} ms")
            assert view["ready"] is False
            response = http.post(url)
            assert response.status_code == 422
            assert response.json()["error"]["code"] == code
            fleet = http.get("/v1/fleet", params={"problems_only": "true", "limit": 1000}).json()
            (branch,) = [b for b in fleet["branches"] if b["branch_id"] == agent.branch_id]
            assert branch["printers"][problem] == 1 and branch["printers"]["down"] == 1
        state_file.unlink()
        eventually(lambda: _printer_view(stack, agent, http)["ready"], timeout=1.0, interval=0.01)
        assert http.post(url).status_code == 200


def test_readyz_lists_named_checks(stack: Stack) -> None:
    response = httpx.get(f"{stack.api_url}/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    checks = [(c["name"], c["ok"]) for c in body["checks"]]
    assert checks == [("broker", True), ("store", True), ("lease", True)]


def test_fleet_needs_a_token_and_validates_its_page(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/v1/fleet").status_code == 401
    with stack.client() as http:
        assert http.get("/v1/fleet", params={"limit": 0}).status_code == 400
        assert http.get("/v1/fleet").json()["totals"]["branches"] >= 0


# --- a dedicated stack: broker crash -------------------------------------------------------


def test_broker_crash_agents_return_and_the_dead_one_expires(own_stack: Stack) -> None:
    stack = own_stack
    heartbeat = 1.0
    expiry = 3  # the default: 3 heartbeats
    common: dict[str, Any] = {"heartbeat_interval": heartbeat, "mqtt": {"keepalive": 2}}
    branch = unique_id("b")
    survivor = stack.add_agent(branch, unique_id("a"), [PRINTER], **common)
    dead = stack.add_agent(branch, unique_id("a"), ["POS-58"], **common)
    for handle in (survivor, dead):
        stack.wait_agent(handle.branch_id, handle.agent_id)
    session = _agent_view(stack, survivor)["session"]

    stack.broker.kill()
    dead.process.kill()  # dies while the broker is down: no will will ever be sent
    died = time.monotonic()
    assert httpx.get(f"{stack.api_url}/readyz").status_code == 503
    time.sleep(0.5)  # not a wait: the broker stays down for half a second
    stack.broker.start()
    restarted = time.monotonic()

    # The dead agent's retained birth survives the restart; its status heartbeat expires.
    stack.wait_agent(dead.branch_id, dead.agent_id, online=False, timeout=expiry + 2)
    dead_for = time.monotonic() - died
    print(f"\nagent that died with the broker: offline {dead_for:.2f} s after its death")
    assert dead_for <= expiry + 0.25  # polling granularity and one HTTP round trip
    assert _agent_view(stack, dead)["state"] == "expired"

    with stack.client(timeout=5) as http:
        eventually(
            lambda: (v := _agent_view(stack, survivor))["online"] and v["session"] > session,
            timeout=10 - (time.monotonic() - restarted),
            interval=0.05,
            what=lambda: _agent_view(stack, survivor),
        )
        back = time.monotonic() - restarted
        print(f"surviving agent reconnected, new session online {back:.2f} s after restart")
        assert http.get("/readyz").status_code == 200
        response = http.post(f"/v1/branches/{branch}/printers/{PRINTER}/test")
        assert response.status_code == 200, response.text
        assert http.post(f"/v1/branches/{branch}/printers/POS-58/test").status_code == 503
    # ... and stays offline over further heartbeats of the survivor.
    time.sleep(2 * heartbeat)  # not eventually: it stays offline over the window
    assert not _agent_view(stack, dead)["online"]


# --- a dedicated stack: a simulated fleet in one process -----------------------------------


def _registry_bytes_per_agent(swarm: Swarm) -> float:
    """tracemalloc over a fresh registry fed the swarm's real birth and status payloads."""
    payloads = [
        (key, agent._presence("online"), encode(agent.status()))
        for key, agent in swarm.agents.items()
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        registry = Registry()
        for (branch, agent_id), presence, status in payloads:
            registry.on_presence(branch, agent_id, presence)
            registry.on_status(branch, agent_id, status, 90)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert len(registry) == len(payloads)
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / len(payloads)


async def _wait_fleet(
    http: httpx.AsyncClient, online: int, offline: int, within: float
) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()

    async def exact() -> dict[str, Any]:
        fleet: dict[str, Any] = (await http.get("/v1/fleet", params={"limit": 1000})).json()
        totals = fleet["totals"]
        assert (totals["agents_online"], totals["agents_offline"]) == (online, offline), totals
        return fleet

    fleet = await eventually_async(exact, timeout=within)
    return time.monotonic() - started, fleet


async def _swarm_run(stack: Stack, n: int) -> None:
    per_branch = 10
    ids = [(f"f{i // per_branch:03d}", f"a{i:04d}") for i in range(n)]
    api = psutil.Process(stack.api.pid if stack.api else os.getpid())
    rss_before = api.memory_info().rss
    # each agent its own printer: a printer name belongs to one agent of a branch
    swarm = Swarm(stack, ids, printers=("P-{agent}",))
    t0 = time.monotonic()
    await swarm.provision()
    provisioned = time.monotonic() - t0
    paper_out = {key for i, key in enumerate(ids) if i % 100 == 3}  # one branch in ten
    for key in paper_out:
        printer = swarm.agents[key].printers[f"P-{key[1]}"]
        state = printer.backend.directory / "state.json"  # type: ignore[attr-defined]
        state.write_text('{"paper": "out"}')
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
        try:
            t0 = time.monotonic()
            async with asyncio.timeout(90):
                await swarm.start()
            connected = time.monotonic() - t0
            seen, _ = await _wait_fleet(http, n, 0, within=30)
            await asyncio.sleep(1.0)  # let the API settle before reading its memory
            rss_after = api.memory_info().rss
            t1 = time.perf_counter()
            full = await http.get("/v1/fleet", params={"limit": 1000})
            fleet_ms = (time.perf_counter() - t1) * 1000
            problems = (await http.get("/v1/fleet", params={"problems_only": "true"})).json()
            assert {b["branch_id"] for b in problems["branches"]} == {b for b, _ in paper_out}

            victims = [key for i, key in enumerate(ids) if i % 2 == 1]
            survivors = set(ids) - set(victims)
            t0 = time.monotonic()
            swarm.crash(victims)
            converged, fleet = await _wait_fleet(http, n - len(victims), len(victims), 30)

            # Exactly the survivors, branch by branch, and the printers behind them.
            agents = {}
            for branch in sorted({b for b, _ in ids}):
                for view in (await http.get(f"/v1/branches/{branch}/agents")).json():
                    agents[(view["branch_id"], view["agent_id"])] = view
            assert {k for k, v in agents.items() if v["online"]} == survivors
            assert {v["state"] for k, v in agents.items() if k not in survivors} == {"offline"}
            for branch in fleet["branches"]:
                assert (branch["agents_online"], branch["agents_offline"]) == (5, 5)
            printers = fleet["totals"]["printers"]
            out_alive = len(paper_out & survivors)
            assert printers["total"] == n and printers["agent_offline"] == len(victims)
            assert printers["ready"] == len(survivors) - out_alive
            assert printers["down"] == len(victims) + out_alive
        finally:
            await swarm.stop()
    per_agent_rss = (rss_after - rss_before) / n
    per_agent_registry = _registry_bytes_per_agent(swarm)
    print(
        f"\n{n} agents in one process: provisioned (batched dynsec) in {provisioned:.2f} s, "
        f"all connected in {connected:.2f} s, all online in the API {seen:.2f} s later; "
        f"{len(victims)} crashed -> fleet exact after {converged * 1000:.0f} ms; "
        f"API RSS +{per_agent_rss / 1024:.1f} KiB/agent, registry (tracemalloc) "
        f"{per_agent_registry / 1024:.2f} KiB/agent; /v1/fleet of {n // per_branch} branches "
        f"{len(full.content)} bytes in {fleet_ms:.1f} ms ({len(problems['branches'])} branches "
        f"with problems_only)"
    )
    assert per_agent_registry > 0


async def test_hundred_simulated_agents_converge_to_exactly_the_survivors(
    own_stack: Stack,
) -> None:
    """The thousand-agent run below at a tenth of its size, in the default suite."""
    await _swarm_run(own_stack, 100)


@pytest.mark.slow
async def test_thousand_simulated_agents_converge_to_exactly_the_survivors(
    own_stack: Stack,
) -> None:
    """1,000 real Agent instances in this process (~15 s on a quiet machine, most of it
    Mosquitto 2.0's dynamic-security plugin rewriting its JSON file after every provisioning
    command; minutes on a loaded one, so it runs with --run-slow)."""
    await _swarm_run(own_stack, 1000)
