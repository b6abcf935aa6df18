"""Exactly once on paper, never late: the agent's ledger and outbox against a real Mosquitto and
real agent processes. A bare MQTT 5 client with the stack's ``debug`` login plays the cloud.

Every virtual printer keeps ``journal.log``, one line per write: a job printed twice would leave
one ``.prn`` file but two journal lines.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from branch_agent._outbox import PROGRESS_HOLD_S
from branch_agent._render import render_content
from printermaster.stack import AgentHandle, Stack
from protocol import decode_content, new_job_id

from ._mqtt import RECEIPT, Cloud
from ._wait import eventually
from .conftest import AgentFactory, job_files, make_stack, unique_id


@pytest.fixture
def cloud_for(stack: Stack) -> Iterator[Any]:
    clients: list[Cloud] = []

    def make(agent: AgentHandle, **kw: Any) -> Cloud:
        client = Cloud(stack, agent.branch_id, **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def journal(agent: AgentHandle, printer: str = "POS-80C") -> list[str]:
    path = agent.printer_dir(printer) / "journal.log"
    return path.read_text().split() if path.exists() else []


def slow_printer(agent: AgentHandle, delay_s: float) -> None:
    directory = agent.printer_dir("POS-80C")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state.json").write_text(json.dumps({"delay_s": delay_s}))


# --- (1) the same job twice prints once -----------------------------------------------------


def test_same_job_twice_prints_once_and_is_answered_from_the_ledger(
    start_agent: AgentFactory, cloud_for: Any
) -> None:
    agent = start_agent()
    cloud = cloud_for(agent)
    job_id = cloud.print_job(agent)
    first = cloud.final(job_id)
    assert first["stage"] == "done" and first["result"]["replayed"] is False
    cloud.print_job(agent, job_id)  # the broker (or the cloud) delivers it again
    eventually(lambda: cloud.stages(job_id).count("done") >= 2, what=lambda: cloud.stages(job_id))
    # a fast print is answered with its final alone (see (8)); the replay is a final too
    assert cloud.stages(job_id) == ["done", "done"]
    replay = cloud.replies[job_id][-1]
    assert replay["result"]["replayed"] is True
    assert replay["result"]["bytes"] == first["result"]["bytes"]
    assert journal(agent) == [job_id]
    assert [f.stem for f in job_files(agent)] == [job_id]


def _jobs_sent_twice_concurrently_print_once(
    count: int, start_agent: AgentFactory, cloud_for: Any
) -> None:
    agent = start_agent()
    cloud = cloud_for(agent)
    other = cloud_for(agent)  # a second sender, like a retrying API instance
    job_ids = [new_job_id() for _ in range(count)]
    orders = [list(job_ids), list(job_ids)]
    random.Random(7).shuffle(orders[1])

    def send_all(sender: Cloud, order: list[str]) -> None:
        for job_id in order:
            sender.print_job(agent, job_id, wait=False)

    started = time.perf_counter()
    threads = [
        threading.Thread(target=send_all, args=(sender, order))
        for sender, order in zip((cloud, other), orders, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    eventually(
        lambda: (
            len(journal(agent)) >= count and all("done" in cloud.stages(j) for j in job_ids[-10:])
        ),
        timeout=90,
        interval=0.1,
        what=lambda: f"{len(journal(agent))} printed",
    )
    for job_id in job_ids:
        cloud.final(job_id, timeout=30)
    elapsed = time.perf_counter() - started
    time.sleep(0.5)  # not eventually: proves no late duplicate prints within the window
    printed = journal(agent)
    assert len(printed) == count and set(printed) == set(job_ids)
    assert len(job_files(agent)) == count
    with cloud._replies_lock:
        fresh = Counter(
            j
            for j, replies in cloud.replies.items()
            for r in replies
            if r["stage"] == "done" and not r["result"]["replayed"]
        )
        total = sum(len(r) for r in cloud.replies.values())
    assert set(fresh.values()) == {1} and set(fresh) == set(job_ids)
    print(f"\n{count} jobs x2 concurrently: {elapsed:.2f}s to all finals, {total} replies")


def test_hundred_jobs_each_sent_twice_concurrently_print_exactly_hundred_times(
    start_agent: AgentFactory, cloud_for: Any
) -> None:
    """The thousand-job run below at a tenth of its size, in the default suite."""
    _jobs_sent_twice_concurrently_print_once(100, start_agent, cloud_for)


@pytest.mark.slow
def test_thousand_jobs_each_sent_twice_concurrently_print_exactly_thousand_times(
    start_agent: AgentFactory, cloud_for: Any
) -> None:
    _jobs_sent_twice_concurrently_print_once(1000, start_agent, cloud_for)


# --- (2) kill -9 while printing ----------------------------------------------------------------


def test_kill_9_mid_print_is_outcome_unknown_and_queued_jobs_print_once(
    stack: Stack, start_agent: AgentFactory, cloud_for: Any
) -> None:
    agent = start_agent()
    cloud = cloud_for(agent)
    slow_printer(agent, 2)
    victim = cloud.print_job(agent)
    cloud.wait_for_stage(victim, "printing")
    queued = [cloud.print_job(agent) for _ in range(2)]
    for job_id in queued:
        cloud.wait_for_stage(job_id, "accepted")
    agent.process.kill()  # kill -9: the victim is half-way through its 2 s write
    (agent.printer_dir("POS-80C") / "state.json").unlink()
    # While the agent is down: a new job waits in the broker's session, and the cloud retries
    # a queued one (same job id), as a redelivery would.
    while_down = cloud.print_job(agent)
    cloud.print_job(agent, queued[0])
    agent.process.start()

    unknown = cloud.final(victim, timeout=20)
    assert unknown["stage"] == "failed"
    assert unknown["error"]["code"] == "OUTCOME_UNKNOWN"
    assert "check the printer before reprinting" in unknown["error"]["message"]
    for job_id in [*queued, while_down]:
        assert cloud.final(job_id, timeout=20)["stage"] == "done"
    time.sleep(1.0)  # not eventually: anything printing twice would have done so by now
    printed = journal(agent)
    assert sorted(printed) == sorted([*queued, while_down])
    assert victim not in printed
    # the victim stays unknown: a redelivery is answered from the ledger, not printed
    cloud.print_job(agent, victim)
    eventually(lambda: cloud.stages(victim).count("failed") >= 2, what=lambda: cloud.stages(victim))
    assert cloud.replies[victim][-1]["error"]["code"] == "OUTCOME_UNKNOWN"
    assert victim not in journal(agent)


# --- (3) replies produced while the broker is down ---------------------------------------------


def test_replies_produced_while_the_broker_is_down_arrive_after_reconnect(
    tmp_path: Path,
) -> None:
    with make_stack(tmp_path / "stack") as own:
        agent = own.add_agent(unique_id("b"), unique_id("a"), ["POS-80C"])
        own.wait_agent(agent.branch_id, agent.agent_id)
        cloud = Cloud(own, agent.branch_id, persistent=True)
        try:
            slow_printer(agent, 1.5)
            first = cloud.print_job(agent)
            second = cloud.print_job(agent)
            cloud.wait_for_stage(first, "printing")
            cloud.wait_for_stage(second, "accepted")
            own.broker.stop()
            stopped = time.monotonic()
            # both jobs finish while there is no broker: their replies wait in the outbox
            eventually(lambda: len(journal(agent)) >= 2, timeout=15, what=lambda: journal(agent))
            assert "done" not in cloud.stages(first)
            own.broker.start()
            done = [cloud.final(job_id, timeout=30) for job_id in (first, second)]
            print(f"\nbroker down {time.monotonic() - stopped:.2f}s; finals arrived after restart")
        finally:
            cloud.close()
        assert [d["stage"] for d in done] == ["done", "done"]
        # per job, the outbox keeps the order accepted -> printing -> done; the second's
        # "printing", produced while the broker was down, was replaced by its final there
        assert cloud.stages(first) == ["accepted", "printing", "done"]
        assert cloud.stages(second) == ["accepted", "done"]
        assert sorted(journal(agent)) == sorted([first, second])


# --- (4) expired jobs --------------------------------------------------------------------------


def test_expired_jobs_are_refused_and_never_printed(
    start_agent: AgentFactory, cloud_for: Any
) -> None:
    agent = start_agent()
    cloud = cloud_for(agent)
    late = cloud.print_job(agent, deadline=time.time() - 1)
    failed = cloud.final(late)
    assert failed["stage"] == "failed" and failed["error"]["code"] == "EXPIRED"
    assert cloud.stages(late) == ["failed"]
    # a deadline that passes while the job waits behind a slow one
    slow_printer(agent, 1.5)
    blocker = cloud.print_job(agent)
    cloud.wait_for_stage(blocker, "printing")
    queued = cloud.print_job(agent, deadline=time.time() + 0.5)
    assert cloud.final(queued)["error"]["code"] == "EXPIRED"
    assert cloud.stages(queued) == ["accepted", "failed"]
    assert cloud.final(blocker)["stage"] == "done"
    # the expired job stays expired when it is delivered again
    cloud.print_job(agent, late)
    eventually(lambda: len(cloud.stages(late)) >= 2, timeout=5)
    assert cloud.replies[late][-1]["error"]["code"] == "EXPIRED"
    assert journal(agent) == [blocker]


# --- (5) cancel ----------------------------------------------------------------------------


def test_cancel_of_waiting_job_never_prints_and_cancel_of_printed_job_conflicts(
    start_agent: AgentFactory, cloud_for: Any
) -> None:
    agent = start_agent()
    cloud = cloud_for(agent)
    cloud.watch_status(agent)
    slow_printer(agent, 1.5)
    blocker = cloud.print_job(agent)
    cloud.wait_for_stage(blocker, "printing")
    victims = [cloud.print_job(agent) for _ in range(2)]
    for job_id in victims:
        cloud.wait_for_stage(job_id, "accepted")
    eventually(
        lambda: any(s.get("queue_depth") == 2 for s in cloud.statuses()),
        timeout=5,
        what=lambda: [s.get("queue_depth") for s in cloud.statuses()],
    )

    cancel = cloud.cancel(agent, victims[0])
    assert cloud.final(cancel)["stage"] == "done"
    assert cloud.stages(cancel) == ["done"]  # its accepted was replaced by its final
    cancelled = cloud.final(victims[0])
    assert cancelled["stage"] == "failed" and cancelled["error"]["code"] == "CANCELLED"
    eventually(
        lambda: any(s.get("queue_depth") == 1 for s in cloud.statuses()),
        timeout=5,
        what=lambda: [s.get("queue_depth") for s in cloud.statuses()],
    )

    assert cloud.final(blocker, timeout=10)["stage"] == "done"
    assert cloud.final(victims[1], timeout=10)["stage"] == "done"
    late_cancel = cloud.cancel(agent, blocker)
    conflict = cloud.final(late_cancel)
    assert conflict["stage"] == "failed" and conflict["error"]["code"] == "CONFLICT"
    ahead = cloud.final(cloud.cancel(agent, new_job_id()))  # not arrived yet: tombstone
    assert ahead["stage"] == "done"
    time.sleep(0.3)  # not eventually: proves the cancelled job does not print within the window
    assert journal(agent) == [blocker, victims[1]]
    assert cloud.stages(victims[0]) == ["accepted", "failed"]
    eventually(lambda: cloud.statuses()[-1].get("queue_depth") == 0, timeout=5)


# --- (6) content on paper ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "copies"),
    [
        (RECEIPT, 2),
        ({"type": "raw", "data": "G0BIZWxsbwoKHVZBAA=="}, 3),  # ESC @ "Hello" feed cut
    ],
)
def test_print_job_bytes_on_paper_equal_render_content(
    start_agent: AgentFactory, cloud_for: Any, content: dict[str, Any], copies: int
) -> None:
    agent = start_agent()
    cloud = cloud_for(agent)
    job_id = cloud.print_job(agent, content=content, copies=copies)
    done = cloud.final(job_id)
    assert done["stage"] == "done", done
    expected = render_content(decode_content(json.dumps(content).encode()), copies=copies)
    on_paper = (agent.printer_dir("POS-80C") / f"{job_id}.prn").read_bytes()
    assert on_paper == expected
    assert done["result"]["bytes"] == len(expected)
    assert cloud.stages(job_id) == ["done"]


def test_graceful_stop_lets_the_printing_job_finish_and_report(
    start_agent: AgentFactory, cloud_for: Any
) -> None:
    agent = start_agent()
    cloud = cloud_for(agent)
    slow_printer(agent, 1.0)
    job_id = cloud.print_job(agent)
    cloud.wait_for_stage(job_id, "printing")
    agent.process.stop()  # SIGTERM: the job on the printer finishes, its reply goes out
    assert cloud.final(job_id, timeout=5)["stage"] == "done"
    agent.process.start()
    time.sleep(1.0)  # not eventually: proves the restarted agent does not print the job again
    assert journal(agent) == [job_id]
    assert cloud.stages(job_id) == ["accepted", "printing", "done"]


# --- (7) a print job waits for its printer, across a kill -9 --------------------------------


def test_print_job_waits_for_paper_across_a_restart_and_prints_once_when_it_is_back(
    start_agent: AgentFactory, cloud_for: Any
) -> None:
    agent = start_agent()
    cloud = cloud_for(agent)
    cloud.watch_status(agent)
    directory = agent.printer_dir("POS-80C")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state.json").write_text(json.dumps({"paper": "out"}))
    job_id = cloud.print_job(agent, deadline=time.time() + 60)
    waiting = cloud.wait_for_stage(job_id, "waiting")
    assert waiting["error"]["code"] == "PAPER_OUT" and waiting["error"]["retryable"] is True
    test_page = cloud.send(agent, "printer.test", {"printer": "POS-80C"})  # never held
    assert cloud.final(test_page)["error"]["code"] == "PAPER_OUT"
    eventually(
        lambda: any(
            s.get("queue_depth") == 1 and s["printers"][0]["paper"] == "out"
            for s in cloud.statuses()
        ),
        timeout=5,
        what=lambda: cloud.statuses()[-1:],
    )

    agent.process.kill()  # kill -9 while the job waits: the ledger holds it
    agent.process.start()
    cloud.print_job(agent, job_id, deadline=time.time() + 60)  # the cloud asks again
    eventually(
        lambda: cloud.stages(job_id).count("waiting") >= 2,
        timeout=20,
        what=lambda: cloud.stages(job_id),
    )
    assert journal(agent) == []
    (directory / "state.json").write_text(json.dumps({"paper": "ok"}))
    done = cloud.final(job_id, timeout=20)
    assert done["stage"] == "done", done
    stages = cloud.stages(job_id)
    assert stages[:2] == ["accepted", "waiting"] and stages[-1] == "done"
    assert stages[-2] in {"waiting", "printing"}  # "printing" is replaced by "done" if fast
    time.sleep(0.5)  # not eventually: proves the job prints once, no second copy follows
    assert journal(agent) == [job_id]


# --- (8) progress folded into the final -------------------------------------------------------


def test_a_fast_print_is_answered_with_its_final_alone(
    start_agent: AgentFactory, cloud_for: Any
) -> None:
    """Request + one reply on the wire: the ``accepted`` and ``printing`` the agent committed
    are replaced by the final before they are due, so they never leave it."""
    agent = start_agent()
    cloud = cloud_for(agent)
    test_page = cloud.send(agent, "printer.test", {"printer": "POS-80C"})
    assert cloud.final(test_page)["stage"] == "done"
    tickets = []
    for _ in range(5):  # one at a time, as a waiter prints them
        tickets.append(cloud.print_job(agent))
        assert cloud.final(tickets[-1])["stage"] == "done"
    time.sleep(PROGRESS_HOLD_S + 0.5)  # a held progress reply would have been sent by now
    with cloud._lock:
        on_the_wire = {
            job_id: [r["stage"] for r in replies] for job_id, replies in cloud.replies.items()
        }
    assert on_the_wire == {job_id: ["done"] for job_id in [test_page, *tickets]}
    assert journal(agent) == [test_page, *tickets]


def test_a_slow_print_reports_accepted_and_printing_while_it_prints(
    start_agent: AgentFactory, cloud_for: Any
) -> None:
    agent = start_agent()
    cloud = cloud_for(agent)
    slow_printer(agent, 2.0)
    sent = time.monotonic()
    job_id = cloud.print_job(agent)
    cloud.wait_for_stage(job_id, "accepted")
    cloud.wait_for_stage(job_id, "printing")
    progress_after = time.monotonic() - sent
    assert "done" not in cloud.stages(job_id)  # heard while the page was still printing
    assert progress_after < 2.0
    assert cloud.final(job_id)["stage"] == "done"
    assert cloud.stages(job_id) == ["accepted", "printing", "done"]
    # a job queued behind it hears accepted while it waits, and nothing it does not need after
    queued = cloud.print_job(agent)
    cloud.wait_for_stage(queued, "accepted")
    assert cloud.final(queued, timeout=10)["stage"] == "done"
    assert journal(agent) == [job_id, queued]
