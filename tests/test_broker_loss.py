"""Messages a crashed broker never saved: Mosquitto persists every ``autosave_interval`` (1 s), so
a ``kill -9`` loses what arrived since the last save. Here the broker restarts from a snapshot of
its persistence file taken before the message arrived - the same thing, made deterministic.

A lost request or a lost final reply must not strand the job: the API asks again (same job id)
and the agent's ledger answers without printing twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator

import pytest

from printermaster.stack import AgentHandle, Stack

from ._wait import eventually
from .conftest import job_files, make_stack, unique_id
from .jobs_helpers import submit, wait_state


@pytest.fixture(scope="module")
def loss_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # expire_after 60 s, outcome_grace 60 s: without a resend the jobs below would stay open
    # far past the waits of these tests
    with make_stack(
        tmp_path_factory.mktemp("loss"),
        sweep_interval=0.2,
        resend_after=1.0,
        sent_grace=1.0,
        outcome_grace=60.0,
    ) as stack:
        yield stack


@pytest.fixture
def agent(loss_stack: Stack) -> Iterator[AgentHandle]:
    handle = loss_stack.add_agent(unique_id("b"), unique_id("a"), ["POS-80C"])
    loss_stack.wait_agent(handle.branch_id, handle.agent_id)
    yield handle
    handle.process.stop()


def snapshot(stack: Stack) -> bytes:
    """The broker's persistence file once it holds everything up to now."""
    path = stack.broker.config.data_dir / "mosquitto.db"
    # not eventually: a file written since now may be a save that began before now; after a
    # whole autosave interval (and a margin) the last save began after now
    time.sleep(stack.broker.config.autosave_interval + 0.5)
    return path.read_bytes()


def crash_back_to(stack: Stack, saved: bytes) -> None:
    """kill -9 the broker and restart it from ``saved``: whatever arrived later is gone."""
    stack.broker.kill()
    (stack.broker.config.data_dir / "mosquitto.db").write_bytes(saved)
    stack.broker.start()


def outbox_size(agent: AgentHandle) -> int:
    with sqlite3.connect(agent.data_dir / "ledger.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


def test_request_lost_by_the_broker_is_sent_again(loss_stack: Stack, agent: AgentHandle) -> None:
    saved = snapshot(loss_stack)
    pid = agent.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # online for the API, but reads nothing
    with loss_stack.client(timeout=10) as http:
        job = submit(http, agent.branch_id, expire_after=60).json()
        assert wait_state(http, job["id"], {"sent"})["state"] == "sent"
        crash_back_to(loss_stack, saved)
        agent.process.kill()  # the request in its socket buffer dies with it
        agent.process.start()
        done = wait_state(http, job["id"], timeout=20)
    assert done["state"] == "printed", done
    assert [f.stem for f in job_files(agent)] == [job["id"]]


def test_final_reply_lost_by_the_broker_is_asked_again(
    loss_stack: Stack, agent: AgentHandle
) -> None:
    printer_dir = agent.printer_dir("POS-80C")
    # a slow page: the API is cut off while it prints, however busy the machine (cutting it off
    # is a dynamic-security command, which can take over a second under load)
    (printer_dir / "state.json").write_text(json.dumps({"delay_s": 4.0}))
    saved = snapshot(loss_stack)
    with loss_stack.client(timeout=10) as http:
        job = submit(http, agent.branch_id, expire_after=60).json()
        wait_state(http, job["id"], {"printing"})
        # the API's session stays in the broker but nothing reaches it: the final reply waits
        # in the broker's queue, acknowledged to the agent
        asyncio.run(_set_cloud_enabled(loss_stack, enabled=False))
        assert not job_files(agent), "the page printed before the API was cut off"
        eventually(lambda: job_files(agent) and outbox_size(agent) == 0, timeout=10, interval=0.05)
        crash_back_to(loss_stack, saved)
        asyncio.run(_set_cloud_enabled(loss_stack, enabled=True))
        done = wait_state(http, job["id"], timeout=20)
    assert done["state"] == "printed", done
    assert done["result"]["replayed"] is True  # answered from the ledger
    assert [f.stem for f in job_files(agent)] == [job["id"]]


async def _set_cloud_enabled(stack: Stack, *, enabled: bool) -> None:
    async with stack.admin() as admin:
        if enabled:
            await admin.enable_client(stack.creds("cloud").username)
        else:
            await admin.disable_client(stack.creds("cloud").username)
