"""The agent: one outbound MQTT 5 session, a request dispatcher and one worker per printer.

Every request gets a reply on its Response Topic with its Correlation Data: ``accepted`` at once,
then one final ``done`` or ``failed``. Malformed payloads and unknown methods are answered with a
typed ``failed``; nothing is silently dropped except where no reply can be addressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import ssl
import time
from dataclasses import dataclass, field

import aiomqtt
import psutil

from protocol import (
    Accepted,
    AgentStatus,
    Backoff,
    Done,
    ErrorCode,
    Failed,
    Presence,
    PrinterState,
    PrinterTestParams,
    PrintResult,
    ProtocolError,
    Reply,
    TopicKind,
    connect_properties,
    decode_params,
    decode_request,
    encode,
    error_info,
    is_valid_id,
    nodelay_socket_options,
    parse_topic,
    presence_topic,
    publish_properties,
    reply_properties,
    request_topic,
    software_version,
    status_topic,
)

from ._config import AgentConfig
from ._discovery import discovered_printers
from ._printers import PrinterBackend, PrinterError, PrinterReading, open_backend
from ._render import render_test_page

log = logging.getLogger("branch_agent")


@dataclass
class _Job:
    job_id: str
    printer: str
    reply_to: str
    correlation: bytes
    deadline: float | None


@dataclass
class _Printer:
    backend: PrinterBackend
    queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)
    reading: PrinterReading = field(default_factory=PrinterReading)
    last_error: PrinterError | None = None
    last_printed_at: float | None = None

    def state(self) -> PrinterState:
        return PrinterState(
            name=self.backend.name,
            kind=self.backend.kind,
            online=self.reading.online,
            paper=self.reading.paper,
            cover_open=self.reading.cover_open,
            last_error=self.last_error.info() if self.last_error else None,
            last_printed_at=self.last_printed_at,
        )


class Agent:
    """Run with ``await agent.run()``; ``agent.stop()`` ends it gracefully (offline at once)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.branch_id = config.branch_id
        self.agent_id = config.agent_id
        config.data_path.mkdir(parents=True, exist_ok=True)
        self.printers = {
            p.name: _Printer(open_backend(p, config.data_path)) for p in config.printers
        }
        self._req_topic = request_topic(self.branch_id, self.agent_id)
        self._presence_topic = presence_topic(self.branch_id, self.agent_id)
        self._status_topic = status_topic(self.branch_id, self.agent_id)
        self._session = 0
        self._started_at = time.time()
        self._client: aiomqtt.Client | None = None
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._process = psutil.Process()
        self._process.cpu_percent()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> asyncio.Event:
        """Set while the agent holds a broker session and has announced itself online."""
        return self._connected

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Serve until :meth:`stop`; printer workers and the status poller end with it."""
        background = [
            asyncio.create_task(self._printer_worker(printer), name=f"printer:{name}")
            for name, printer in self.printers.items()
        ]
        background.append(asyncio.create_task(self._poll_printers(), name="printer-status"))
        try:
            await self._session_loop()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

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

    def _client_for_session(self) -> aiomqtt.Client:
        mqtt = self.config.mqtt
        connect_props = connect_properties(session_expiry=mqtt.session_expiry)
        tls_context = None
        if mqtt.tls:
            tls_context = ssl.create_default_context(cafile=mqtt.ca_file, cadata=mqtt.ca_pem)
        return aiomqtt.Client(
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
            timeout=10,
        )

    async def _session_loop(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            # Session numbers rise on every connect, even across restarts: a will from an older
            # session arriving late is then recognisably stale.
            self._session = max(self._session + 1, time.time_ns() // 1_000_000)
            try:
                async with self._client_for_session() as client:
                    self._client = client
                    await client.subscribe(self._req_topic, qos=1)
                    await client.publish(
                        self._presence_topic, self._presence("online"), qos=1, retain=True
                    )
                    await self._publish_status(client)
                    self._connected.set()
                    backoff.reset()
                    log.info(
                        "connected to %s:%s as session %d",
                        self.config.mqtt.host,
                        self.config.mqtt.port,
                        self._session,
                    )
                    await self._serve_session(client)
                    # Graceful stop: say offline ourselves; a clean DISCONNECT sends no will.
                    await client.publish(
                        self._presence_topic,
                        self._presence("offline", "stopped"),
                        qos=1,
                        retain=True,
                    )
                    await self._drain_sends()
                    return
            except aiomqtt.MqttError as exc:
                log.warning("broker connection lost: %s", exc)
            finally:
                self._client = None
                self._connected.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next()):
                    await self._stopping.wait()

    async def _serve_session(self, client: aiomqtt.Client) -> None:
        """Handle messages and heartbeats until the agent stops or the connection breaks."""
        stop = asyncio.create_task(self._stopping.wait(), name="stop-wait")
        messages = asyncio.create_task(self._read_messages(client), name="messages")
        heartbeat = asyncio.create_task(self._heartbeat(client), name="heartbeat")
        try:
            done, _ = await asyncio.wait(
                {stop, messages, heartbeat}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stop:
                    task.result()  # re-raise a broken connection
        finally:
            for task in (stop, messages, heartbeat):
                task.cancel()
            await asyncio.gather(stop, messages, heartbeat, return_exceptions=True)

    async def _read_messages(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                self._on_request(message)
            except Exception:  # a bug here must not take the session down
                log.exception("unexpected error handling a request on %s", message.topic)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.heartbeat_interval):
                    await self._status_dirty.wait()
            self._status_dirty.clear()
            await self._publish_status(client)

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        props = publish_properties()
        props.MessageExpiryInterval = self.config.heartbeat_expiry
        await client.publish(
            self._status_topic, encode(self.status()), qos=1, retain=True, properties=props
        )

    def status(self) -> AgentStatus:
        now = time.time()
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
            queue_depth=sum(p.queue.qsize() for p in self.printers.values()),
            printers=[p.state() for p in self.printers.values()],
            at=now,
            discovered=discovered_printers(self.config),
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
        ):
            log.warning(
                "refusing to reply on %r: not a reply topic of branch %s",
                topic[:200],
                self.branch_id,
            )
            return None, correlation
        return topic, correlation

    def _on_request(self, message: aiomqtt.Message) -> None:
        reply_to, correlation = self._reply_target(message)
        job_id = None
        if correlation is not None:
            try:
                candidate = correlation.decode("ascii")
            except UnicodeDecodeError:
                candidate = ""
            job_id = candidate if is_valid_id(candidate) else None

        def fail(code: ErrorCode, text: str) -> None:
            log.info("request %s failed: %s %s", job_id, code, text)
            self._send_reply(
                reply_to,
                correlation,
                Failed(job_id=job_id, at=time.time(), error=error_info(code, text)),
            )

        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            fail(ErrorCode.INVALID_REQUEST, "payload is not bytes")
            return
        try:
            request = decode_request(bytes(payload))
            params = decode_params(request)
        except ProtocolError as exc:
            fail(exc.code, exc.message)
            return
        if job_id is None:
            fail(
                ErrorCode.INVALID_REQUEST,
                "correlation data must be the job id: 1-64 ASCII characters of A-Z a-z 0-9 _ . -",
            )
            return
        if reply_to is None:
            log.warning("request %s has no usable response topic; not executed", job_id)
            return
        deadline = _deadline(request.deadline, message)
        if deadline is not None and time.time() > deadline:
            fail(ErrorCode.EXPIRED, "the job's deadline passed before the agent read it")
            return
        match params:
            case PrinterTestParams(printer=name):
                printer = self.printers.get(name)
                if printer is None:
                    fail(
                        ErrorCode.PRINTER_NOT_FOUND,
                        f"agent {self.agent_id} has no printer {name[:64]!r}",
                    )
                    return
                self._send_reply(reply_to, correlation, Accepted(job_id=job_id, at=time.time()))
                printer.queue.put_nowait(_Job(job_id, name, reply_to, correlation or b"", deadline))
            case _:  # a method in the protocol this agent does not serve yet
                fail(ErrorCode.UNKNOWN_METHOD, f"method {request.method!r} is not served here")

    def _send_reply(self, topic: str | None, correlation: bytes | None, reply: Reply) -> None:
        if topic is None:
            return
        client = self._client
        if client is None:
            log.warning("reply for %s dropped: not connected", reply.job_id)
            return
        task = asyncio.create_task(
            client.publish(topic, encode(reply), qos=1, properties=reply_properties(correlation)),
            name=f"reply:{reply.job_id}",
        )
        self._sends.add(task)
        task.add_done_callback(self._send_done)

    def _send_done(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("reply not delivered: %s", task.exception())

    async def _drain_sends(self) -> None:
        if self._sends:
            await asyncio.wait(set(self._sends), timeout=2)

    # --- printing --------------------------------------------------------------------------

    async def _printer_worker(self, printer: _Printer) -> None:
        while True:
            job = await printer.queue.get()
            try:
                reply = await self._print(printer, job)
            except Exception as exc:  # a backend bug must not kill the worker
                log.exception("printing job %s failed unexpectedly", job.job_id)
                reply = Failed(
                    job_id=job.job_id,
                    at=time.time(),
                    error=error_info(ErrorCode.PRINTER_ERROR, f"{type(exc).__name__}: {exc}"),
                )
            self._send_reply(job.reply_to, job.correlation, reply)
            self._status_dirty.set()

    async def _print(self, printer: _Printer, job: _Job) -> Reply:
        if job.deadline is not None and time.time() > job.deadline:
            return Failed(
                job_id=job.job_id,
                at=time.time(),
                error=error_info(ErrorCode.EXPIRED, "deadline passed while queued"),
            )
        data = render_test_page(
            branch_id=self.branch_id, agent_id=self.agent_id, printer=job.printer, job_id=job.job_id
        )
        started = time.perf_counter()
        try:
            await asyncio.to_thread(printer.backend.write, data, job.job_id)
        except PrinterError as exc:
            printer.last_error = exc
            return Failed(job_id=job.job_id, at=time.time(), error=exc.info())
        printer.last_error = None
        printer.last_printed_at = time.time()
        return Done(
            job_id=job.job_id,
            at=printer.last_printed_at,
            result=PrintResult(
                printer=job.printer,
                bytes=len(data),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            ),
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
                    self._status_dirty.set()
            await asyncio.sleep(self.config.status_poll_interval)


def _deadline(payload_deadline: float | None, message: aiomqtt.Message) -> float | None:
    """The earlier of the payload's deadline (agent clock) and the broker's remaining expiry."""
    expiry = getattr(message.properties, "MessageExpiryInterval", None)
    candidates = [d for d in (payload_deadline, expiry and time.time() + expiry) if d]
    return min(candidates) if candidates else None
