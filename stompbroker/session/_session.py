"""One STOMP connection: the protocol's rules between the parser and the broker.

States::

    awaiting CONNECT --CONNECT/STOMP--> logging in --let in--> connected --DISCONNECT--> closed
          |                                  |                     |
          +--any other frame, bad input,     +--refused: ERROR     +--ERROR, lost--> closed
             timeout: ERROR --> closed          (maybe delayed) --> closed

* Before CONNECT only CONNECT or STOMP is accepted, under the parser's smaller
  pre-connect limits, and only for ``connect_timeout_ms``.
* CONNECT is decided by a ``Handshake`` (``_connect``): version, heart-beats, and
  the credentials (``_auth``), maybe checked in a thread. Until CONNECTED is sent
  nothing more is read or handled; a refused CONNECT gets its ERROR (maybe delayed)
  and the connection closes. SEND and SUBSCRIBE are checked against the access
  rules (``Guard``).
* Every frame that carries ``receipt`` gets a RECEIPT, in the order the frames
  came, and only once what the frame did is as durable as it will be (a
  persistent SEND waits for the store).
* A peer's fault ends the connection with an ERROR naming it (and
  ``receipt-id`` when the offending frame asked for a receipt); our own fault is
  logged with its traceback and the client sees only "internal error".
* A connection holds at most ``max_subscriptions`` subscriptions and
  ``max_transactions`` open transactions of ``max_frames_per_transaction`` frames;
  the frame beyond a limit is the client's fault.
* When the connection ends, every subscription is detached (unacknowledged queue
  messages go back to their queue) and open transactions are aborted.
* The session's observer, if it has one, hears once of CONNECTED and once of the
  session closing the connection itself ("ERROR sent: MESSAGE", "DISCONNECT"); not
  of a connection that the transport lost first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stompbroker.codec import VERSIONS, Frame, FrameParser, ProtocolError
from stompbroker.core import (
    Broker,
    Clock,
    DelayedCall,
    DestinationError,
    Message,
    MessageError,
    StoreUnavailable,
    Subscription,
    parse_destination,
)

from . import _wire
from ._auth import Guard
from ._connect import Accepted, Handshake, Refused
from ._errors import ClientError, required
from ._heartbeat import Heartbeat
from ._ports import SessionObserver, Transport
from ._receipts import Receipts
from ._settings import SessionSettings
from ._subscriptions import Subscriptions, flag
from ._transaction import Transactions

log = Logger(namespace="stompbroker.session")

#: The SEND frame's headers that are about the frame, not the message: left out of it.
FRAME_HEADERS = frozenset({"destination", "receipt", "transaction", "content-length"})


class StompSession:
    """The STOMP state machine for one connection. Single-threaded, reactor-driven."""

    def __init__(
        self,
        broker: Broker,
        transport: Transport,
        clock: Clock,
        session_id: str,
        settings: SessionSettings | None = None,
        peer: str = "",
    ) -> None:
        self.broker = broker
        self.transport = transport
        self.clock = clock
        self.session_id = session_id
        self.settings = settings or SessionSettings()
        self.peer = peer
        self.version: str | None = None
        self.connected = False
        self.closed = False
        #: The CONNECT ``client-id`` (ActiveMQ, Artemis), "" when none: names durables.
        self.client_id = ""
        #: The header escaping in force: the negotiated version ("1.0" before CONNECT).
        self.escaping = "1.0"
        #: Whether the connection's send buffer is full.
        self.paused = False
        #: The protocol versions this connection may negotiate (a WebSocket
        #: subprotocol may narrow them).
        self.versions: tuple[str, ...] = VERSIONS
        #: Told of CONNECTED and of the session closing the connection (None: nobody).
        self.observer: SessionObserver | None = None
        self._parser = FrameParser(self.settings.pre_connect_limits)
        self._parser.stop_after_frame = True
        #: What the connection's user may do; who it is once logged in.
        self.guard = Guard(self.settings.access, broker, peer)
        #: Whether CONNECT awaits its answer (its credentials are being checked) ...
        self._logging_in = False
        #: ... and what arrived meanwhile.
        self._stash = bytearray()
        self._heartbeat: Heartbeat | None = None
        self.subscriptions = Subscriptions(self)
        self._transactions = Transactions(
            broker,
            session_id,
            self.settings.max_transactions,
            self.settings.max_frames_per_transaction,
        )
        self._receipts = Receipts(
            self._write_receipt,
            lambda held: self._hold_reading("store", held),
            self._receipt_failed,
            self._receipts_drained,
        )
        #: Why we do not read from the client now: "store" (it lags), "room" (a full queue).
        self._holds: set[str] = set()
        self._disconnecting = False
        self._handlers = self._handler_table()
        timeout = self.settings.connect_timeout_ms
        self._connect_timer: DelayedCall | None = (
            clock.callLater(timeout / 1000.0, self._no_connect) if timeout > 0 else None
        )

    def _handler_table(self) -> dict[str, Callable[[Frame], None]]:
        """What handles each command once connected."""
        return {
            "SEND": self._on_send,
            "SUBSCRIBE": self._on_subscribe,
            "UNSUBSCRIBE": self._on_unsubscribe,
            "ACK": self._on_ack,
            "NACK": self._on_nack,
            "BEGIN": self._on_begin,
            "COMMIT": self._on_commit,
            "ABORT": self._on_abort,
            "DISCONNECT": self._on_disconnect,
            "CONNECT": self._on_connect_again,
            "STOMP": self._on_connect_again,
        }

    @property
    def user(self) -> str | None:
        """The login the client connected with (None: anonymous, or not connected yet)."""
        return self.guard.user

    @property
    def logging_in(self) -> bool:
        """Whether CONNECT came and awaits its answer (its login checked, or its refusal due)."""
        return self._logging_in and not self.closed

    @property
    def buffered(self) -> int:
        """How many received bytes wait for the rest of a frame (bounded by the limits)."""
        return self._parser.buffered

    # -- input ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Bytes from the client."""
        if self.closed or self._disconnecting:
            return
        if self._logging_in:
            self._stash_input(data)
            return
        heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.received()
        self._consume(data)

    def peer_alive(self) -> None:
        """The transport heard from the client below STOMP (a WebSocket Pong or frame)."""
        if self._heartbeat is not None:
            self._heartbeat.received()

    def _consume(self, data: bytes) -> None:
        """Parse and handle ``data`` (after what the parser holds)."""
        parser = self._parser
        frames = parser.feed(data)
        while frames:
            for frame in frames:
                self._handle(frame)
                if self.closed or self._disconnecting or self._logging_in:
                    return
            # Frames after CONNECT wait until the limits are switched.
            frames = parser.feed(b"") if parser.buffered and parser.error is None else []
        if parser.error is not None:
            self._fail_protocol(parser.error)

    def _handle(self, frame: Frame) -> None:
        try:
            if not self.connected:
                self._on_connect(frame)
            else:
                self._handlers[frame.command](frame)
        except ClientError as exc:
            self._fail(exc.message, exc.detail, frame.headers.get("receipt"))
        except ProtocolError as exc:
            self._fail(exc.message, exc.detail, frame.headers.get("receipt"))
        except Exception:
            log.failure(
                "internal error handling {command} from {peer}",
                command=frame.command,
                peer=self.peer,
            )
            self._fail("internal error", "the broker failed; the failure is logged", None)

    def connection_lost(self) -> None:
        """The connection ended, by either side: leave no state behind."""
        self.closed = True
        self._release()

    def _release(self) -> None:
        """Stop timers, abort transactions, detach subscriptions (idempotent)."""
        self._stop_connect_timer()
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        # Detach first: what an aborted transaction gives back must not come here.
        self.subscriptions.release()
        self._transactions.abort_all()
        self.broker.delete_temporaries(self.session_id)

    # -- CONNECT -------------------------------------------------------------

    def _on_connect(self, frame: Frame) -> None:
        handshake = Handshake(self.settings, self.clock, self.session_id, self.peer, self.versions)
        self.guard.begin_login(frame.headers.get("login"))
        answer = handshake.receive(frame)
        self._stop_connect_timer()
        self._logging_in = True
        answer.addCallback(self._answered)
        answer.addErrback(self._login_broke)
        if self._logging_in and not self.closed:
            self._hold_reading("login", True)  # the answer comes later: read nothing meanwhile

    def _answered(self, answer: Accepted | Refused) -> None:
        if self.closed:
            return
        if isinstance(answer, Refused):
            if answer.delay <= 0:
                self._refuse(answer)
            else:  # the timer is cancelled like the CONNECT timer if the client leaves
                self._connect_timer = self.clock.callLater(answer.delay, self._refuse, answer)
            return
        self._logging_in = False
        self.guard.user = answer.user
        revoked = self.guard.revoked()
        if revoked is not None:  # a reload changed the user while its password was checked
            self._fail(*revoked, None)
            return
        self._let_in(answer)
        if "login" in self._holds:  # it waited for a thread: go on with what came meanwhile
            self._hold_reading("login", False)
            stash, self._stash = bytes(self._stash), bytearray()
            self._consume(stash)

    def _refuse(self, refused: Refused) -> None:
        self._fail(refused.message, refused.detail, None, list(refused.extra))

    def _login_broke(self, failure: Any) -> None:
        log.failure("checking the login of {peer} failed", failure, peer=self.peer)
        self._fail("internal error", "the broker failed; the failure is logged", None)

    def _stash_input(self, data: bytes) -> None:
        """Keep what arrives while CONNECT awaits its answer (reading is paused: little)."""
        self._stash += data
        limits = self.settings.limits
        if len(self._stash) > limits.max_header_bytes + limits.max_body_bytes:
            self._fail("too much before CONNECTED", "wait for CONNECTED before sending", None)

    def _let_in(self, accepted: Accepted) -> None:
        """CONNECTED, the limits after CONNECT, heart-beats."""
        self.guard.user = accepted.user
        self.client_id = accepted.client_id
        self.version = self.escaping = version = accepted.version
        self.connected = True
        parser = self._parser
        parser.version = version
        parser.limits = self.settings.limits
        parser.stop_after_frame = False
        self.transport.write(_wire.encode_frame("CONNECTED", accepted.headers))
        outgoing, incoming = accepted.heartbeat
        if outgoing or incoming:
            tolerance = self.settings.heartbeat_tolerance
            self._heartbeat = Heartbeat(
                self.clock,
                outgoing,
                incoming,
                tolerance,
                self._send_beat,
                self._client_silent,
                ping=getattr(self.transport, "ping", None),
            )
            self._heartbeat.start()
        log.debug("{peer} connected with STOMP {version}", peer=self.peer, version=version)
        if self.observer is not None:
            self.observer.connected(accepted.user, version)

    def _on_connect_again(self, frame: Frame) -> None:
        raise ClientError(
            "already connected", f"{frame.command} after the connection was established"
        )

    def _no_connect(self) -> None:
        self._connect_timer = None
        timeout = self.settings.connect_timeout_ms
        self._fail(
            f"no CONNECT within {timeout} ms",
            f"a connection must send CONNECT or STOMP within {timeout} ms of opening",
            None,
        )

    def _stop_connect_timer(self) -> None:
        timer, self._connect_timer = self._connect_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _send_beat(self) -> None:
        if not self.closed:
            self.transport.write(b"\n")

    def _client_silent(self, silent: float) -> None:
        self._fail(
            "heart-beat timeout",
            f"nothing received from the client for {silent * 1000:.0f} ms",
            None,
        )

    # -- flow control --------------------------------------------------------

    def pause_delivery(self) -> None:
        """The connection's send buffer is full: stop handing us messages."""
        self.paused = True
        self.subscriptions.pause_all()

    def resume_delivery(self) -> None:
        """The send buffer drained: messages may flow again."""
        self.paused = False
        self.subscriptions.resume_all()

    # -- output --------------------------------------------------------------

    def abandon(self, subscription: Subscription, reason: str) -> None:
        """The broker gives up on this connection (a slow consumer): ERROR and close."""
        log.warn("closing {peer}: {reason}", peer=self.peer, reason=reason)
        self.close_with_error("slow consumer", reason)

    def revoked(self) -> tuple[str, str] | None:
        """Why the users and rules now in force end this connection: the ERROR's message
        and detail (its credentials, then its subscriptions); None if they do not."""
        if not self.connected or self.closed:
            return None
        return self.guard.revoked() or self.subscriptions.revoked()

    def close_with_error(self, message: str, detail: str) -> None:
        """End the connection from outside (an administrator): ERROR, then close.

        Everything stops at once, as for any ERROR: nothing is delivered after it.
        """
        self._fail(message, detail, None)

    def deliver(self, subscription: Subscription, message: Message) -> None:
        """Write one MESSAGE (the broker calls this)."""
        head = self.subscriptions.heads[subscription.key]
        if not subscription.auto and self.escaping == "1.2":
            head += b"ack:" + message.message_id.encode() + b"@%d\n" % subscription.key
        self.write_message(head, message)

    def write_message(self, head: bytes, message: Message) -> None:
        """Write a MESSAGE frame: ``head`` (command, subscription, ack) and the message."""
        if message.delivery_count > 1:
            head += b"redelivered:true\ndelivery-count:%d\n" % message.delivery_count
        self.transport.write(head + _wire.message_tail(message, self.escaping))

    def write(self, data: bytes) -> None:
        """Write encoded frames unless the connection is closed."""
        if not self.closed:
            self.transport.write(data)

    def _write_receipt(self, receipt_id: str) -> None:
        if not self.closed:
            self.transport.write(_wire.receipt(receipt_id, self.escaping))

    def _receipt(self, frame: Frame, waiting: Deferred[Any] | None = None) -> None:
        """Answer ``frame``'s receipt, after ``waiting`` and after earlier receipts."""
        self._receipts.answer(frame.headers.get("receipt"), waiting)

    def _hold_reading(self, reason: str, hold: bool) -> None:
        """Stop (or resume) reading from a producer: the store has yet to write many of its
        messages, or it sent to a full queue under ``on_full: block``.

        Its socket then fills and TCP slows the producer down, so memory stays bounded.
        Its heart-beats are not held against it meanwhile.
        """
        before = bool(self._holds)
        if hold:
            self._holds.add(reason)
        else:
            self._holds.discard(reason)
        held = bool(self._holds)
        if held == before:
            return
        if self._heartbeat is not None:
            self._heartbeat.held = held
        producer = getattr(self.transport, "pauseProducing" if held else "resumeProducing", None)
        if producer is not None and not self.closed:
            producer()

    def _receipt_failed(self, failure: Any, receipt_id: str | None) -> None:
        if failure.check(DestinationError):  # refused by the cluster (a durable in use)
            self._fail(str(failure.value), "", receipt_id)
            return
        if not failure.check(StoreUnavailable):  # the store logged that one already
            log.failure("a durable write failed for {peer}", failure, peer=self.peer)
        self._fail(
            "message not stored",
            "the broker could not store the message; it was not accepted",
            receipt_id,
        )

    def _receipts_drained(self) -> None:
        if self._disconnecting:
            self._close("DISCONNECT")

    def _fail(
        self,
        message: str,
        detail: str,
        receipt_id: str | None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """End the connection with an ERROR frame."""
        if self.closed:
            return
        self.transport.write(_wire.error(message, detail, self.escaping, receipt_id, extra))
        self._close(f"ERROR sent: {message}")

    def _fail_protocol(self, error: ProtocolError) -> None:
        self._fail(error.message, error.detail, error.receipt)

    def _close(self, reason: str) -> None:
        """Close the connection (``reason``: for the observer); nothing more is delivered."""
        if self.closed:  # the transport was lost first: it knows why
            return
        self.closed = True
        if self.observer is not None:
            self.observer.closed(reason)
        self._release()
        self.transport.loseConnection()

    # -- SEND ----------------------------------------------------------------

    def _on_send(self, frame: Frame) -> None:
        headers = frame.headers
        destination = required(headers, "destination", "SEND")
        if "," in destination:  # a composite send: each member is checked
            for member in destination.split(","):
                self.guard.check_send(member)
        else:
            self.guard.check_send(destination)
        persistent = _persistence(headers.get("persistent"))
        name = headers.get("transaction")
        transaction = self._transactions.staging(name) if name is not None else None
        reply_to = headers.get("reply-to")
        if reply_to is not None and reply_to.startswith(("/temp-queue/", "/temp-topic/")):
            headers["reply-to"] = self._reply_destination(reply_to)
        receipt_id = headers.get("receipt")
        # The frame is ours: what it carries for the SEND alone does not go into the message.
        for header in FRAME_HEADERS.intersection(headers):
            del headers[header]
        try:
            if transaction is not None:
                transaction.send(destination, headers, frame.body, persistent, self.guard.user)
                self._receipts.answer(receipt_id)
                return
            sent = self.broker.send(
                destination, headers, frame.body, persistent, self.session_id, self.guard.user
            )
        except (DestinationError, MessageError) as exc:
            self._fail(str(exc), "", receipt_id)
            return
        if sent.room is not None:
            self._hold_reading("room", True)
            sent.room.addCallback(lambda _: self._hold_reading("room", False))
        self._receipts.answer(receipt_id, sent.written)

    def _reply_destination(self, reply_to: str) -> str:
        """Create our temp destination named in ``reply-to``; subscribe to it if we do not.

        Returns its broker-wide name, which other connections can send to.
        """
        kind, name = parse_destination(reply_to)
        temporary = self.broker.temporary(kind, name, self.session_id)
        if not self.subscriptions.owns_subscription_to(temporary.address):
            self.subscriptions.subscribe_reply_queue(reply_to)
        return temporary.address

    # -- SUBSCRIBE / UNSUBSCRIBE ---------------------------------------------

    def _on_subscribe(self, frame: Frame) -> None:
        assert self.version is not None
        start, written = self.subscriptions.subscribe(frame.headers, self.version)
        self._receipt(frame, written)
        if written is None:
            start()
        else:  # delivery starts once the subscription is there (a failure closed us)
            written.addCallback(lambda _: None if self.closed else start())

    def _on_unsubscribe(self, frame: Frame) -> None:
        assert self.version is not None
        self.subscriptions.unsubscribe(frame.headers, self.version)
        self._receipt(frame)

    # -- ACK / NACK ----------------------------------------------------------

    def _on_ack(self, frame: Frame) -> None:
        self._settle(frame, True)

    def _on_nack(self, frame: Frame) -> None:
        if self.version == "1.0":
            raise ClientError("unknown command", "NACK is not part of STOMP 1.0")
        self._settle(frame, False)

    def _settle(self, frame: Frame, ack: bool) -> None:
        headers = frame.headers
        subscription, message_id = self.subscriptions.find_delivery(headers, frame.command)
        name = headers.get("transaction")
        requeue = ack or headers.get("requeue", "true").strip().lower() != "false"
        if name is not None:
            transaction = self._transactions.staging(name)
            if ack:
                transaction.acknowledge(subscription, message_id)
            else:
                transaction.refuse(subscription, message_id, requeue)
        elif ack:
            self.broker.ack(subscription, message_id)
        else:
            self.broker.nack(subscription, message_id, requeue)
        self._receipt(frame)

    # -- transactions --------------------------------------------------------

    def _on_begin(self, frame: Frame) -> None:
        self._transactions.begin(required(frame.headers, "transaction", "BEGIN"))
        self._receipt(frame)

    def _on_commit(self, frame: Frame) -> None:
        transaction = self._transactions.take(required(frame.headers, "transaction", "COMMIT"))
        try:
            waiting = transaction.commit()
        except (DestinationError, MessageError) as exc:
            raise ClientError(str(exc)) from None
        self._receipt(frame, waiting)

    def _on_abort(self, frame: Frame) -> None:
        self._transactions.take(required(frame.headers, "transaction", "ABORT")).abort()
        self._receipt(frame)

    # -- DISCONNECT ----------------------------------------------------------

    def _on_disconnect(self, frame: Frame) -> None:
        self._receipt(frame)
        self._disconnecting = True
        if not self._receipts:
            self._close("DISCONNECT")


def _persistence(value: str | None) -> bool | None:
    """SEND's ``persistent`` header: None when absent (the destination decides)."""
    return None if value is None else flag(value)
