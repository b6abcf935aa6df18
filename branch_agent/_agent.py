"""The agent: one outbound MQTT 5 session, a request dispatcher and one worker per printer.

Every request gets a reply on its Response Topic with its Correlation Data: ``accepted`` (held up
to 0.5 s and left out when the final comes first, see :mod:`._outbox`), then one final ``done``
or ``failed``. Malformed payloads and unknown methods are answered with a typed ``failed``
(:mod:`._requests`); nothing is silently dropped except where no reply can be addressed. What
the cloud sees of the agent, presence and status, is :mod:`._status`.

Receive before acknowledge: an incoming request is recorded in the job ledger (:mod:`._jobs`,
:mod:`._ledger`) before its PUBACK goes out (a ``manual_ack`` client of :mod:`mqtt_adapter`),
and every reply leaves through the persistent outbox (:mod:`._outbox`), so neither a request nor
a reply is lost in a crash. The session is :class:`mqtt_adapter.SessionLoop` over the agent's
ordered broker list: the next broker at once when one fails, back to the first when it answers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import aiomqtt
import psutil

from agent_config import AgentConfig, MqttSettings
from groupcommit import Writer
from mqtt_adapter import (
    Client,
    SessionLoop,
    Will,
    install_fast_paths,
    make_client,
    publish_acked,
    reply_properties,
)
from protocol import presence_topic, request_topic, status_topic

from ._fleet import Fleet
from ._jobs import Admission, Jobs, PrinterSlot
from ._ledger import LEDGER_FILE, Ledger, OutboxEntry
from ._observe import AgentObserver, agent_gauges, metrics_server
from ._outbox import Outbox
from ._printers import open_backend
from ._requests import RequestIntake
from ._status import StatusReporting

log = logging.getLogger("branch_agent")

#: Seconds a graceful stop waits for the job on the printer to finish (then it is cut off and
#: reported OUTCOME_UNKNOWN at the next start), and for the outbox to be acknowledged.
STOP_GRACE_S = 5.0
DRAIN_S = 2.0
#: Seconds an MQTT operation (the connect first) may take when the agent has several brokers.
CONNECT_TIMEOUT_S = 4.0


class Agent(StatusReporting, RequestIntake):
    """Run with ``await agent.run()``; ``agent.stop()`` ends it gracefully (offline at once).

    The job ledger runs its own writer thread, unless ``ledger_writer`` is given: many agents in
    one process (a simulation) share one writer, which must be running while they run.
    """

    def __init__(self, config: AgentConfig, *, ledger_writer: Writer | None = None) -> None:
        install_fast_paths()
        #: Remote printer configuration and signed updates (the printers the cloud last set).
        self.fleet = Fleet(config)
        config = self.fleet.agent_config
        self.config = config
        self.branch_id = config.branch_id
        self.agent_id = config.agent_id
        config.data_path.mkdir(parents=True, exist_ok=True)
        self.printers = {
            p.name: PrinterSlot(open_backend(p, config.data_path)) for p in config.printers
        }
        self._req_topic = request_topic(self.branch_id, self.agent_id)
        self._presence_topic = presence_topic(self.branch_id, self.agent_id)
        self._status_topic = status_topic(self.branch_id, self.agent_id)
        self._session = 0
        self._started_at = time.time()
        #: the client of the current session (None between sessions)
        self.client: Client | None = None
        self._stopping = asyncio.Event()
        self._sessions: SessionLoop[MqttSettings] = SessionLoop(
            config.mqtt.endpoints(),
            log=log,
            failback_interval=config.mqtt.failback_interval,
            stopping=self._stopping,
        )
        self._connected = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._status_check = None
        self._published_view = ()
        self.ledger = Ledger(
            config.data_path / LEDGER_FILE, sync=config.ledger_sync, writer=ledger_writer
        )
        self.outbox = Outbox(self.ledger)
        self.jobs = Jobs(
            self.ledger,
            self.printers,
            branch_id=self.branch_id,
            agent_id=self.agent_id,
            on_change=self._status_changed,
        )
        self._workers: list[asyncio.Task[None]] = []
        #: request and reply log events, traces, and the optional local /metrics
        self.observer = AgentObserver(self.branch_id, self.agent_id)
        self.outbox.on_fold = self.observer.folded
        #: broker sessions opened since start (more than one: it reconnected)
        self.sessions = 0
        #: the local /metrics port while running (``metrics_port`` in the config)
        self.metrics_port: int | None = None
        self._process = psutil.Process()
        self._process.cpu_percent()
        self.fleet.attach(self)

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> asyncio.Event:
        """Set while the agent holds a broker session and has announced itself online."""
        return self._connected

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Serve until :meth:`stop`; printer workers and the status poller end with it.

        Before the first connect, the ledger settles what a previous run left behind (see
        :meth:`Jobs.recover`) and the outbox takes over its undelivered replies.
        """
        gauges = agent_gauges(self)
        with metrics_server(self.observer, self.config.metrics_port, gauges) as port:
            self.metrics_port = port
            await self._run()

    async def _run(self) -> None:
        async with self.ledger:
            await self.outbox.load()
            await self.jobs.recover()
            await self.jobs.prune(self.config.ledger_retention_s)
            self._workers = [
                asyncio.create_task(self.jobs.run_printer(slot), name=f"printer:{name}")
                for name, slot in self.printers.items()
            ]
            background = [
                asyncio.create_task(self._poll_printers(), name="printer-status"),
                asyncio.create_task(self._prune_ledger(), name="ledger-prune"),
            ]
            try:
                await self._sessions.run(self._connect, self._serve, ended=self._session_ended)
            finally:
                await self._stop_printing()
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                await self.outbox.close()

    async def _stop_printing(self) -> None:
        """Let the job on each printer finish (bounded), take no further one."""
        self.jobs.close()
        for slot, worker in zip(self.printers.values(), self._workers, strict=True):
            if slot.busy is None:
                worker.cancel()
        _, late = (
            await asyncio.wait(self._workers, timeout=STOP_GRACE_S) if self._workers else ((), ())
        )
        for worker in late:
            log.warning(
                "stopping while %s is printing: its outcome will be unknown", worker.get_name()
            )
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _prune_ledger(self) -> None:
        interval = min(3600.0, self.config.ledger_retention_s)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.jobs.prune(self.config.ledger_retention_s)
            except Exception:
                log.exception("pruning the ledger failed")

    # --- MQTT session ----------------------------------------------------------------------

    def _connect(self, mqtt: MqttSettings) -> Client:
        """The client of the next session, with this session's will."""
        # Session numbers rise on every connect, even across restarts: a will from an older
        # session arriving late is then recognisably stale.
        self._session = max(self._session + 1, time.time_ns() // 1_000_000)
        return make_client(
            mqtt.host,
            mqtt.port,
            client_id=mqtt.username,
            username=mqtt.username,
            password=mqtt.password,
            tls=mqtt.tls,
            ca_file=mqtt.ca_file,
            ca_pem=mqtt.ca_pem,
            transport=mqtt.transport,
            websocket_path=mqtt.websocket_path,
            will=Will(
                self._presence_topic,
                self._presence("offline", "connection lost"),
                qos=1,
                retain=True,
            ),
            clean_start=False,
            session_expiry=mqtt.session_expiry,
            keepalive=mqtt.keepalive,
            # with another broker to go to, one that does not answer is given up sooner
            timeout=CONNECT_TIMEOUT_S if len(self._sessions.endpoints) > 1 else 10,
            manual_ack=True,
        )

    async def _serve(self, client: Client, mqtt: MqttSettings) -> None:
        """One session: subscribe, announce, serve; on a graceful stop say offline."""
        self.client = client
        # One SUBSCRIBE: requests, and the retained printer config and releases.
        topics = (self._req_topic, *self.fleet.topics())
        await client.subscribe([(t, 1) for t in topics])
        await client.publish(self._presence_topic, self._presence("online"), qos=1, retain=True)
        await self._publish_status(client)
        self._connected.set()
        self._sessions.connected()
        self.fleet.on_connected()
        self.sessions += 1
        log.info("connected to %s:%s as session %d", mqtt.host, mqtt.port, self._session)
        await self._serve_session(client)
        # Graceful stop: say offline ourselves; a clean DISCONNECT sends no will.
        await client.publish(
            self._presence_topic, self._presence("offline", "stopped"), qos=1, retain=True
        )

    def _session_ended(self) -> None:
        self.client = None
        self._connected.clear()

    async def _serve_session(self, client: Client) -> None:
        """Handle messages, replies and heartbeats until the agent stops or the connection
        breaks. On stop, the job being printed finishes and the outbox drains first."""
        stop = asyncio.create_task(self._stopping.wait(), name="stop-wait")
        messages = asyncio.create_task(self._read_messages(client), name="messages")
        heartbeat = asyncio.create_task(self._heartbeat(client), name="heartbeat")
        replies = asyncio.create_task(
            self.outbox.pump(functools.partial(self._publish_reply, client)), name="outbox"
        )
        tasks = (stop, messages, heartbeat, replies)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop:
                    task.result()  # re-raise a broken connection
            messages.cancel()  # unread requests stay with the broker's session
            await self._stop_printing()
            await self.outbox.drain(DRAIN_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_messages(self, client: Client) -> None:
        async for message in client.messages:
            try:
                intake = self._intake(message)
            except Exception:  # a bug here must not take the session down
                log.exception("unexpected error handling a request on %s", message.topic)
                intake = None
            self.observer.received(message, intake)
            # Submitted in arrival order, committed in that order, acknowledged in that order.
            self.jobs.submit(intake).add_done_callback(
                functools.partial(self._committed, client, message)
            )

    def _committed(
        self,
        client: Client,
        message: aiomqtt.Message,
        future: asyncio.Future[Admission],
    ) -> None:
        """The request is in the ledger: now (and only now) send its PUBACK."""
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error(
                "request on %s not recorded (%s): not acknowledged, the broker redelivers it",
                message.topic,
                exc,
            )
            return
        if client is self.client:
            client.ack(message)
        self.jobs.admitted(future.result())

    def _publish_reply(self, client: Client, entry: OutboxEntry) -> asyncio.Future[None]:
        props = reply_properties(entry.correlation, self.observer.reply(entry))
        return publish_acked(client, entry.topic, entry.payload, properties=props)
