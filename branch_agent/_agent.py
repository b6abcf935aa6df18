"""The agent: one outbound MQTT 5 session, a request dispatcher and one worker per printer.

Every request gets a reply on its Response Topic with its Correlation Data: ``accepted`` (held up
to 0.5 s and left out when the final comes first, see :mod:`._outbox`), then one final ``done``
or ``failed``. Malformed payloads and unknown methods are answered with a
typed ``failed``; nothing is silently dropped except where no reply can be addressed.

Receive before acknowledge: an incoming request is recorded in the job ledger (:mod:`._jobs`,
:mod:`._ledger`) before its PUBACK goes out (:mod:`._mqtt`), and every reply leaves through the
persistent outbox (:mod:`._outbox`), so neither a request nor a reply is lost in a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import platform
import ssl
import time

import aiomqtt
import psutil

from groupcommit import Writer
from protocol import (
    AgentStatus,
    Backoff,
    ErrorCode,
    JobCancelParams,
    Presence,
    PrinterTestParams,
    PrintJobParams,
    ProtocolError,
    TopicKind,
    UpdateInfo,
    connect_properties,
    decode_params,
    decode_request,
    encode,
    is_valid_id,
    nodelay_socket_options,
    parse_topic,
    presence_topic,
    publish_acked,
    publish_properties,
    reply_properties,
    request_topic,
    software_version,
    status_topic,
)

from ._config import AgentConfig, MqttSettings
from ._discovery import discovered
from ._fleet import Fleet
from ._jobs import Admission, CancelRequest, Intake, JobRequest, Jobs, PrinterSlot, Refusal
from ._ledger import LEDGER_FILE, Ledger, OutboxEntry
from ._mqtt import BrokerRotation, ManualAckClient, reachable
from ._observe import AgentObserver, agent_gauges, metrics_server
from ._outbox import Outbox
from ._printers import PrinterReading, open_backend

log = logging.getLogger("branch_agent")

#: Seconds a graceful stop waits for the job on the printer to finish (then it is cut off and
#: reported OUTCOME_UNKNOWN at the next start), and for the outbox to be acknowledged.
STOP_GRACE_S = 5.0
DRAIN_S = 2.0
#: Seconds an MQTT operation (the connect first) may take when the agent has several brokers.
CONNECT_TIMEOUT_S = 4.0


class _PreferredBrokerBack(Exception):
    """The agent's first broker answers again while it is connected to another one."""


class Agent:
    """Run with ``await agent.run()``; ``agent.stop()`` ends it gracefully (offline at once).

    The job ledger runs its own writer thread, unless ``ledger_writer`` is given: many agents in
    one process (a simulation) share one writer, which must be running while they run.
    """

    def __init__(self, config: AgentConfig, *, ledger_writer: Writer | None = None) -> None:
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
        self._client: ManualAckClient | None = None
        self._brokers = BrokerRotation(config.mqtt.endpoints(), Backoff())
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        #: Set when the status the cloud sees changed (or may have: a printer's reading).
        self._status_dirty = asyncio.Event()
        self._status_check: asyncio.TimerHandle | None = None
        self._published_view: tuple[object, ...] = ()
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
                await self._session_loop()
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

    def _presence(self, state: str, reason: str = "") -> bytes:
        return encode(
            Presence(
                state=state,  # type: ignore[arg-type]
                session=self._session,
                branch_id=self.branch_id,
                agent_id=self.agent_id,
                version=software_version(),
                at=time.time(),
                reason=reason,
                printers=list(self.printers),
            )
        )

    def _client_for_session(self, mqtt: MqttSettings) -> ManualAckClient:
        connect_props = connect_properties(session_expiry=mqtt.session_expiry)
        tls_context = None
        if mqtt.tls:
            tls_context = ssl.create_default_context(cafile=mqtt.ca_file, cadata=mqtt.ca_pem)
        return ManualAckClient(
            mqtt.host,
            mqtt.port,
            username=mqtt.username,
            password=mqtt.password,
            identifier=mqtt.username,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(
                self._presence_topic,
                self._presence("offline", "connection lost"),
                qos=1,
                retain=True,
            ),
            clean_start=False,
            properties=connect_props,
            keepalive=mqtt.keepalive,
            transport=mqtt.transport,
            websocket_path=mqtt.websocket_path if mqtt.transport == "websockets" else None,
            tls_context=tls_context,
            socket_options=nodelay_socket_options(),
            # with another broker to go to, one that does not answer is given up sooner
            timeout=CONNECT_TIMEOUT_S if len(self._brokers.endpoints) > 1 else 10,
        )

    async def _session_loop(self) -> None:
        brokers = self._brokers
        while not self._stopping.is_set():
            mqtt = brokers.current
            # Session numbers rise on every connect, even across restarts: a will from an older
            # session arriving late is then recognisably stale.
            self._session = max(self._session + 1, time.time_ns() // 1_000_000)
            try:
                async with self._client_for_session(mqtt) as client:
                    self._client = client
                    # One SUBSCRIBE: requests, and the retained printer config and releases.
                    topics = (self._req_topic, *self.fleet.topics())
                    await client.subscribe([(t, 1) for t in topics])
                    await client.publish(
                        self._presence_topic, self._presence("online"), qos=1, retain=True
                    )
                    await self._publish_status(client)
                    self._connected.set()
                    brokers.connected()
                    self.fleet.on_connected()
                    self.sessions += 1
                    log.info(
                        "connected to %s:%s as session %d", mqtt.host, mqtt.port, self._session
                    )
                    await self._serve_session(client)
                    # Graceful stop: say offline ourselves; a clean DISCONNECT sends no will.
                    await client.publish(
                        self._presence_topic,
                        self._presence("offline", "stopped"),
                        qos=1,
                        retain=True,
                    )
                    return
            except _PreferredBrokerBack:
                log.info("the preferred broker answers again: moving back to it")
                brokers.back_to_preferred()
                continue
            except aiomqtt.MqttError as exc:
                log.warning("broker %s:%s lost: %s", mqtt.host, mqtt.port, exc)
            finally:
                self._client = None
                self._connected.clear()
            delay = brokers.failed()  # the next broker at once; a pause after a whole round
            if delay:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()

    async def _watch_preferred(self) -> None:
        """While on another broker: return once the preferred one accepts connections."""
        if self._brokers.preferred:
            await asyncio.Event().wait()  # never: already there
        while True:
            await asyncio.sleep(self.config.mqtt.failback_interval)
            if await reachable(self._brokers.endpoints[0]):
                return

    async def _serve_session(self, client: ManualAckClient) -> None:
        """Handle messages, replies and heartbeats until the agent stops or the connection
        breaks. On stop, the job being printed finishes and the outbox drains first."""
        stop = asyncio.create_task(self._stopping.wait(), name="stop-wait")
        messages = asyncio.create_task(self._read_messages(client), name="messages")
        heartbeat = asyncio.create_task(self._heartbeat(client), name="heartbeat")
        replies = asyncio.create_task(
            self.outbox.pump(functools.partial(self._publish_reply, client)), name="outbox"
        )
        failback = asyncio.create_task(self._watch_preferred(), name="failback")
        tasks = (stop, messages, heartbeat, replies, failback)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is failback and not self._stopping.is_set():
                    # leave this session as if the connection broke: printing goes on, the
                    # outbox sends what is left on the preferred broker
                    raise _PreferredBrokerBack
                if task is not stop:
                    task.result()  # re-raise a broken connection
            messages.cancel()  # unread requests stay with the broker's session
            await self._stop_printing()
            await self.outbox.drain(DRAIN_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_messages(self, client: ManualAckClient) -> None:
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
        client: ManualAckClient,
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
        if client is self._client:
            client.ack(message)
        self.jobs.admitted(future.result())

    def _publish_reply(self, client: ManualAckClient, entry: OutboxEntry) -> asyncio.Future[None]:
        props = reply_properties(entry.correlation, self.observer.reply(entry))
        return publish_acked(client, entry.topic, entry.payload, properties=props)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()  # the session's first status went out just before
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(last + self.config.heartbeat_interval):
                    await self._status_dirty.wait()
            self._status_dirty.clear()
            await self._publish_status(client)
            last = loop.time()

    def _status_changed(self) -> None:
        """The queue or a printer changed: compare what the cloud sees once the burst settled.

        A burst of changes (a queue filling and draining) becomes one snapshot. A job that went
        straight to an idle printer and printed changes nothing the cloud sees: its
        last_printed_at rides on the heartbeat, instead of one status message per ticket.
        """
        if self._status_check is None:
            self._status_check = asyncio.get_running_loop().call_later(
                self.config.status_debounce, self._check_status
            )

    def _check_status(self) -> None:
        self._status_check = None
        if self._visible_status() != self._published_view:
            self._status_dirty.set()

    def _visible_status(self) -> tuple[object, ...]:
        """What a status change is published for: queue depth and each printer's condition."""
        return (
            self.jobs.queue_depth,
            tuple(
                (name, s.reading.online, s.reading.paper, s.reading.cover_open, s.last_error)
                for name, s in self.printers.items()
            ),
        )

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        self._published_view = self._visible_status()
        self._status_dirty.clear()
        props = publish_properties()
        props.MessageExpiryInterval = self.config.heartbeat_expiry
        await client.publish(
            self._status_topic, encode(self.status()), qos=1, retain=True, properties=props
        )

    def status(self) -> AgentStatus:
        now = time.time()
        found = discovered(self.config, on_change=self._status_dirty.set)
        with self._process.oneshot():
            cpu = self._process.cpu_percent()
            rss = self._process.memory_info().rss
        return AgentStatus(
            branch_id=self.branch_id,
            agent_id=self.agent_id,
            session=self._session,
            version=software_version(),
            os=f"{platform.system()} {platform.release()}",
            started_at=self._started_at,
            uptime_s=round(now - self._started_at, 3),
            cpu_percent=cpu,
            rss_bytes=rss,
            queue_depth=self.jobs.queue_depth,
            printers=[p.state() for p in self.printers.values()],
            at=now,
            discovered=[p.name for p in found],
            discovered_printers=found,
            config_version=self.fleet.config.version,
            config_error=self.fleet.config.error,
            update=self.fleet.updater.info if self.fleet.updater else UpdateInfo(),
        )

    # --- requests --------------------------------------------------------------------------

    def _reply_target(self, message: aiomqtt.Message) -> tuple[str | None, bytes | None]:
        props = message.properties
        topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if topic is None:
            return None, correlation
        try:
            parsed = parse_topic(topic)
        except ProtocolError:
            parsed = None
        if (
            parsed is None
            or parsed.kind is not TopicKind.REPLY
            or parsed.branch_id != self.branch_id
            or parsed.agent_id != self.agent_id
        ):
            # The broker lets this agent publish only on pm/v1/{branch}/reply/+/{agent}: a
            # reply anywhere else would be refused (and its job would never be answered).
            log.warning(
                "refusing to reply on %r: not a reply topic of agent %s/%s",
                topic[:200],
                self.branch_id,
                self.agent_id,
            )
            return None, correlation
        return topic, correlation

    def _intake(self, message: aiomqtt.Message) -> Intake:
        """Validate one request into what the job ledger records (or a typed refusal)."""
        if self.fleet.handle(message):  # printer configuration, releases
            return None
        reply_to, correlation = self._reply_target(message)
        job_id = None
        if correlation is not None:
            try:
                candidate = correlation.decode("ascii")
            except UnicodeDecodeError:
                candidate = ""
            job_id = candidate if is_valid_id(candidate) else None

        def refuse(code: ErrorCode, text: str) -> Refusal:
            log.info("request %s failed: %s %s", job_id, code, text)
            return Refusal(job_id, reply_to, correlation, code, text)

        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            return refuse(ErrorCode.INVALID_REQUEST, "payload is not bytes")
        try:
            request = decode_request(bytes(payload))
            params = decode_params(request)
        except ProtocolError as exc:
            return refuse(exc.code, exc.message)
        if job_id is None or correlation is None:
            return refuse(
                ErrorCode.INVALID_REQUEST,
                "correlation data must be the job id: 1-64 ASCII characters of A-Z a-z 0-9 _ . -",
            )
        if reply_to is None:
            log.warning("request %s has no usable response topic; not executed", job_id)
            return None
        match params:
            case PrinterTestParams(printer=name) | PrintJobParams(printer=name):
                if name not in self.printers:
                    return refuse(
                        ErrorCode.PRINTER_NOT_FOUND,
                        f"agent {self.agent_id} has no printer {name[:64]!r}",
                    )
                deadline = _deadline(request.deadline, message)
                return JobRequest(
                    job_id,
                    request.method,
                    name,
                    bytes(request.params),
                    reply_to,
                    correlation,
                    deadline,
                )
            case JobCancelParams(job_id=target):
                return CancelRequest(job_id, target, reply_to, correlation)
            case _:  # a method in the protocol this agent does not serve yet
                return refuse(
                    ErrorCode.UNKNOWN_METHOD, f"method {request.method!r} is not served here"
                )

    async def _poll_printers(self) -> None:
        while True:
            for printer in self.printers.values():
                try:
                    reading = await asyncio.to_thread(printer.backend.status)
                except Exception as exc:  # a backend bug must not freeze the reported status
                    log.exception("reading the status of %s failed", printer.backend.name)
                    reading = PrinterReading(online=False, detail=f"status failed: {exc}")
                if reading != printer.reading:
                    printer.reading = reading
                    self._status_changed()
            await asyncio.sleep(self.config.status_poll_interval)


def _deadline(payload_deadline: float | None, message: aiomqtt.Message) -> float | None:
    """The earlier of the payload's deadline (agent clock) and the broker's remaining expiry."""
    expiry = getattr(message.properties, "MessageExpiryInterval", None)
    candidates = [d for d in (payload_deadline, expiry and time.time() + expiry) if d]
    return min(candidates) if candidates else None
