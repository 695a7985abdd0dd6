"""``TcpTransport``: authenticated, framed TCP (optionally TLS) between cluster nodes.

Theory of operation:

- *Membership.* Every node knows every node's ``(host, port)``, its own
  included: it listens there (``start()``). The membership may change
  while the transport runs (``set_members``, ``add_peer``,
  ``remove_peer``; the runtime calls them when a new configuration takes
  effect): a new member is dialed (when this node has the lower id) or
  admitted to the handshake; a removed one's dial loop and connection end,
  its queued frames are dropped, and its handshakes are refused from then
  on (``auth.check_dialer_hello`` checks the current members, and a
  handshake that completes after the removal is closed).
- *One connection per pair, dialed by the lower node id.* For each peer with
  a higher id a node runs a dial loop; peers with a lower id dial it. The
  rule is deterministic, so two nodes never race to build two connections;
  the connection carries messages both ways. A listener that accepts a new
  authenticated connection from a peer it is already connected to (the peer
  restarted before the old socket noticed) drops the old one.
- *Handshake.* Before any message, both ends run the challenge-response of
  ``auth`` within ``handshake_timeout_s``. Failures (unknown node, wrong
  cluster, bad proof, timeout, an oversized or malformed handshake frame)
  close the connection, are logged on ``paxostob.transport`` and counted in
  ``stats.auth_failures``.
- *Strangers.* Anyone who reaches the port can open connections, so what an
  unauthenticated connection may hold is bounded: at most
  ``handshakes_per_address_max`` handshakes in progress per source address
  and ``handshakes_max`` in all; beyond a limit a new connection takes the
  place of the oldest handshake that has not sent an acceptable ``Hello``
  (one waiting unread in its socket counts as sent), or is closed at once
  if there is none (``admission`` says why: a first-come limit lets a
  stranger who reopens its connections keep the peers out). Every
  handshake has one deadline, ``handshake_timeout_s``. Warnings about
  strangers are written at most once per source address per
  ``warning_interval_s``, with a count of those held back.
- *Frames.* ``frames``: 4-byte big-endian length, 1 version byte, then a
  ``codec`` message. A malformed, oversized (> ``frame_bytes_max``) or
  undecodable frame closes that connection only (``stats.bad_frames``); the
  dialer reconnects, other peers are unaffected. A message whose sender is not
  the authenticated peer is dropped (``stats.bad_senders``).
- *Outbox.* ``send`` encodes the message and appends the frame to the peer's
  outbox, a deque of at most ``outbox_max`` frames. When it is full the
  *oldest* frame is dropped (``stats.dropped_outbox``): Paxos resends what
  matters, and a fresh message supersedes a stale one. The outbox survives
  reconnections; frames already handed to a socket that then breaks are lost
  (Paxos tolerates loss). One writer task per connection writes whatever
  the outbox holds with ``writelines`` and waits for ``drain``, so a slow
  peer fills its own outbox and nobody else's. A snapshot chunk's bytes
  are not copied into its frame: the frame is kept as two buffers (the
  header with the message's other fields, then the chunk itself) that
  ``writelines`` hands to the socket as they are.
- *Direct write.* The common case skips the outbox and the writer task:
  when the peer is connected, its outbox is empty and the socket's write
  buffer (plus what this path holds) is under its high-water mark, ``send``
  puts the frame in the link's ``pending`` list, and the frames sent in one
  event-loop pass are written at its end with one ``writelines`` (a task
  wake-up per message saved, and one syscall per pass instead of one per
  frame); ``flush()`` writes them at once, for a caller about to block the
  loop. Never while frames are queued in the outbox, and the writer
  writes ``pending`` before the outbox, so a peer gets its frames in
  ``send`` order either way.
- *Reconnect.* The dial loop retries with capped exponential backoff
  (``connect_backoff_s = (first, cap)``) and jitter (a delay is drawn in
  ``[d/2, d]``), so restarted clusters do not reconnect in lockstep.
- *Self.* Messages to this node are put in its inbox directly, no socket.
- *Inbox.* Envelopes from all peers go to one inbox of at most ``inbox_max``
  envelopes; when it is full the connections stop reading (TCP back-pressure
  on the senders) until ``receive`` makes room. Messages to self are dropped
  instead (``stats.dropped_inbox``): ``send`` never waits.
- *Reading.* After the handshake (run on asyncio streams, inside TLS if
  any) the socket's protocol becomes ``_SessionReader``: ``data_received``
  decodes the frames and hands each message on at once, with no task per
  read. A full inbox pauses the socket's reading until there is room.
- *Receiver.* ``set_receiver(callback)`` (the optional push path of
  transport/base.py) bypasses the inbox: each connection's reader calls the
  callback with every envelope it decodes, in arrival order; messages to
  self reach it from the event loop (``call_soon``), never from inside
  ``send``. The callback's owner bounds what it queues (the node driver
  drops and counts beyond its ``inbox_max``).
- *TLS.* ``ssl_server`` and ``ssl_client`` (both or neither) wrap the
  listener and the dials; the handshake above runs inside TLS.

The event loop: this module installs nothing. ``install_uvloop()`` sets
uvloop's event loop policy when uvloop is importable; an application (the
CLI) calls it before ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from ..codec import decode_message, encode_message_parts
from ..core.messages import Envelope, Message
from ..errors import ConfigurationError, DecodeError, NotRunningError, TransportClosedError
from .admission import PendingHandshakes, WarningLimiter
from .auth import (
    HANDSHAKE_FRAME_BYTES_MAX,
    SECRET_BYTES_MIN,
    HandshakeError,
    Hello,
    check_dialer_hello,
    check_listener_hello,
    decode_hello,
    decode_proof,
    encode_hello,
    encode_proof,
    new_nonce,
    proof,
    verify_proof,
)
from .base import Receiver
from .frames import (
    FRAME_BYTES_MAX_DEFAULT,
    HEADER_BYTES,
    FrameDecoder,
    encode_frame,
    encode_frame_parts,
)

__all__ = [
    "CONNECT_BACKOFF_S_DEFAULT",
    "CONNECT_TIMEOUT_S_DEFAULT",
    "FRAME_BYTES_MAX_DEFAULT",
    "HANDSHAKES_MAX_DEFAULT",
    "HANDSHAKES_PER_ADDRESS_MAX_DEFAULT",
    "HANDSHAKE_TIMEOUT_S_DEFAULT",
    "INBOX_MAX_DEFAULT",
    "OUTBOX_MAX_DEFAULT",
    "WARNING_INTERVAL_S_DEFAULT",
    "TcpStats",
    "TcpTransport",
    "format_address",
    "install_uvloop",
    "parse_address",
]

log = logging.getLogger("paxostob.transport")

#: Per peer. At the core's message sizes (mostly well under 1 KiB) a few MiB;
#: deep enough to ride out a reconnect at full speed.
OUTBOX_MAX_DEFAULT = 10_000
#: Envelopes received and not yet taken by ``receive``; the driver drains the
#: inbox continuously, so this is reached only when the node is overloaded.
INBOX_MAX_DEFAULT = 100_000
#: The deadline of a whole handshake (and, with TLS, of the TLS handshake
#: before it): four small frames, two round trips, about 1 ms on a LAN and
#: under 1 s between continents (300 ms round trips, TLS included), so 2 s
#: is ample for a real peer and caps how long a stranger holds a slot.
HANDSHAKE_TIMEOUT_S_DEFAULT = 2.0
#: One TCP connect; a dead host is retried after the backoff anyway.
CONNECT_TIMEOUT_S_DEFAULT = 5.0
#: 50 ms first retry (a restarting peer is usually back quickly), capped at 2 s
#: (a peer that was down for long is found within 2 s of its return).
CONNECT_BACKOFF_S_DEFAULT = (0.05, 2.0)
#: Handshakes in progress from one source address. One host dials this node
#: once per node it runs (one connection at a time each), so 16 is more than
#: any real host needs, and one stranger's address holds at most 16 slots.
HANDSHAKES_PER_ADDRESS_MAX_DEFAULT = 16
#: Handshakes in progress in all: 16 addresses at their limit. Each holds a
#: socket, a task and at most a handshake frame (a few KiB), and the file
#: descriptors stay well under the usual limit of 1024 per process.
HANDSHAKES_MAX_DEFAULT = 256
#: At most one warning line per source address per 10 s: an attack is
#: reported at once and then every 10 s with a count, a few lines a minute
#: per address instead of one per connection.
WARNING_INTERVAL_S_DEFAULT = 10.0
#: A look at what a socket holds, without taking it and without waiting.
_PEEK_NOW = socket.MSG_PEEK | socket.MSG_DONTWAIT
#: One read from a socket; frames may span reads.
READ_CHUNK_BYTES = 256 << 10
#: Frames per ``writelines``: large enough to amortize the syscalls, small
#: enough that ``drain`` keeps a slow peer's outbox (and drops) meaningful.
WRITE_BATCH_MAX = 1024

#: A frame in an outbox: its bytes, or (header and head, tail) when its tail is
#: a big buffer written as it is (a snapshot chunk: ``codec.encode_message_parts``).
_Frame = bytes | tuple[bytes, bytes]


@dataclass(slots=True)
class TcpStats:
    """Counters of one ``TcpTransport`` (read them; do not modify them).

    ``sent``: frames handed to peer connections. ``looped_back``: messages to
    self put in the inbox. ``received``: envelopes from peers put in the inbox.
    (With ``set_receiver``, "put in the inbox" means handed to the receiver.)
    Drops by ``send``: ``dropped_outbox`` (the oldest frame of a full outbox),
    ``dropped_unknown_dst``, ``dropped_too_large`` (larger than
    ``frame_bytes_max`` or not encodable), ``dropped_inbox`` (to self, inbox
    full). Connections: ``connects`` (authenticated connections made),
    ``reconnects`` (those to a peer that had one before), ``connect_failures``
    (dials that failed before the handshake, a failed TLS handshake included;
    a listener's failed TLS handshakes are asyncio's to log, before this
    transport sees the connection), ``auth_failures`` (handshakes
    failed, either side), ``accepted`` (connections accepted on the peer
    port, those then closed included), ``handshakes_refused`` (accepted connections closed
    at once: no handshake under the limit could be replaced),
    ``handshakes_pushed_out`` (handshakes closed to make room for a newer
    connection), ``bad_frames`` (connections closed for a malformed,
    oversized or undecodable frame), ``bad_senders`` (messages dropped because
    they claim a sender other than the authenticated peer),
    ``dropped_removed_peer`` (messages that arrived from a peer after it was
    removed from the membership, while its connection closed).
    """

    sent: int = 0
    looped_back: int = 0
    received: int = 0
    dropped_outbox: int = 0
    dropped_unknown_dst: int = 0
    dropped_too_large: int = 0
    dropped_inbox: int = 0
    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    auth_failures: int = 0
    accepted: int = 0
    handshakes_refused: int = 0
    handshakes_pushed_out: int = 0
    bad_frames: int = 0
    bad_senders: int = 0
    dropped_removed_peer: int = 0


def install_uvloop() -> bool:
    """Make new event loops uvloop loops, if uvloop is importable; True if it is.

    Call it before ``asyncio.run``. The library never calls it: the event
    loop is the application's choice.
    """
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class _FrameStream:
    """A connection's streams and its frame decoder."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frame_bytes_max: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(frame_bytes_max)
        self._aborted = False
        #: Why a newer connection took this handshake's place, if one did.
        self.pushed_out: str | None = None
        #: The member whose acceptable Hello this connection sent, once it did.
        self.claimed_as: str | None = None
        peer = writer.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        #: The source address (the host): what the handshake limits count by.
        self.address = str(peer[0]) if isinstance(peer, tuple) else str(peer)

    async def read(self) -> bytes:
        """The next payload; ``DecodeError`` for a bad frame, ``ConnectionError`` at EOF."""
        decoder = self.decoder
        while (payload := decoder.next_payload()) is None:
            data = await self.reader.read(READ_CHUNK_BYTES)
            if not data:
                raise ConnectionResetError("the peer closed the connection")
            decoder.feed(data)
        return payload

    def write(self, payload: bytes) -> None:
        self.writer.write(encode_frame(payload))

    def abort(self) -> None:
        """Close the socket now, discarding unsent data (the node is done with it)."""
        if not self._aborted:
            self._aborted = True
            self.writer.transport.abort()


class _SessionReader(asyncio.Protocol):
    """The read side of an authenticated connection: its socket's protocol after the handshake.

    ``data_received`` feeds the frame decoder and hands each message on at
    once, in arrival order: no task wakes up per read. The handshake ran on
    the stream; ``attach`` takes the socket over with the bytes the stream
    read past it. The write side stays the stream's: flow-control calls are
    passed to the stream's protocol, which ``drain`` relies on. While the
    inbox is full (and no receiver is set) the socket stops reading, the
    rest stays in the decoder, and ``pump`` resumes when there is room.
    """

    def __init__(self, owner: TcpTransport, peer: str, stream: _FrameStream) -> None:
        self._owner = owner
        self._peer = peer
        self._stream = stream
        self._decoder = stream.decoder
        # A StreamWriter's transport reads too (typeshed types it WriteTransport).
        self._sock = cast(asyncio.Transport, stream.writer.transport)
        self._flow = self._sock.get_protocol()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._error: BaseException | None = None
        self._active = True
        self._paused = False
        #: Arrivals held back while ``attach`` takes the stream's buffer.
        self._holding: list[bytes] | None = None

    async def attach(self) -> None:
        reader = self._stream.reader
        if reader.exception() is not None or reader.at_eof():
            self._sock.set_protocol(self)
            self._end(ConnectionResetError("the peer closed the connection"))
            return
        # From here on the socket's bytes come to data_received; those the
        # stream read past the handshake are taken with public calls only:
        # ending the stream makes ``read()`` return its buffer without
        # waiting. Arrivals meanwhile are held back, so the order holds.
        # (An EOF the stream saw with bytes still buffered is not seen here:
        # the socket then fails on the next write, which ends the session.)
        held: list[bytes] = []
        self._holding = held
        self._sock.set_protocol(self)
        reader.feed_eof()
        try:
            data = await reader.read()
        except Exception as e:  # pragma: no cover - the stream saw no error above
            self._end(e)
            return
        finally:
            self._holding = None
        for chunk in [data, *held]:
            if chunk:
                self.data_received(chunk)
        self.pump()  # the decoder may hold whole frames already
        if self._active and not self._paused:
            self._sock.resume_reading()  # the stream may have paused it; a no-op otherwise

    def detach(self) -> BaseException | None:
        """Stop delivering (the session ends); the error that ended it, if any."""
        self._active = False
        self._owner._paused.discard(self)
        if not self.done.done():
            self.done.set_result(None)
        return self._error

    def _end(self, error: BaseException) -> None:
        if self._active and not self.done.done():
            self._error = error
            self._active = False
            self._owner._paused.discard(self)
            self.done.set_result(None)

    def pump(self) -> None:
        """Deliver the decoded frames while there is room; pause the socket if not."""
        owner, decoder, peer = self._owner, self._decoder, self._peer
        try:
            while self._active and not owner._closed:
                if not owner._has_room():
                    if not self._paused:
                        self._paused = True
                        owner._paused.add(self)
                        self._sock.pause_reading()
                    return
                payload = decoder.next_payload()
                if payload is None:
                    break
                owner._deliver(peer, decode_message(payload))
        except Exception as e:  # DecodeError, or a receiver's bug: close this connection
            self._end(e)
            return
        if self._paused:
            self._paused = False
            owner._paused.discard(self)
            if self._active:
                self._sock.resume_reading()

    def data_received(self, data: bytes) -> None:
        if not self._active:
            return
        if self._holding is not None:
            self._holding.append(data)
            return
        try:
            self._decoder.feed(data)
        except DecodeError as e:
            self._end(e)
            return
        self.pump()

    def eof_received(self) -> bool:
        self._end(ConnectionResetError("the peer closed the connection"))
        return False  # close the socket

    def connection_lost(self, exc: Exception | None) -> None:
        self._flow.connection_lost(exc)  # wakes a drain() waiting on the write side
        self._end(exc or ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._flow.pause_writing()

    def resume_writing(self) -> None:
        self._flow.resume_writing()


class _Link:
    """What a node keeps for one peer: the outbox and the current connection."""

    def __init__(self, peer: str, address: tuple[str, int], dials: bool, outbox_max: int) -> None:
        self.peer = peer
        self.address = address
        self.dials = dials
        self.outbox: deque[_Frame] = deque(maxlen=outbox_max)
        self.has_frames = asyncio.Event()
        #: The task running the current connection (the dial loop, or the accept handler).
        self.session: asyncio.Task[None] | None = None
        self.dial_task: asyncio.Task[None] | None = None
        self.connected = False
        #: The current connection's socket while ``send`` may write to it
        #: directly (set and cleared by the session), and its high-water mark.
        self.socket: asyncio.WriteTransport | None = None
        self.high_water = 0
        #: Frames ``send`` took the direct way this loop pass, written
        #: together at its end (``_flush``) or by the writer before the outbox.
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.connects = 0


class TcpTransport:
    """This node's endpoint on a TCP cluster; implements ``Transport``.

    ``members`` maps every node id (this one included) to the ``(host, port)``
    it listens on. ``cluster_id`` and ``secret`` (at least
    ``SECRET_BYTES_MIN`` bytes, the same on every node) authenticate peers.
    Call ``await start()`` before use, and ``await close()`` at the end.
    Raises ``ConfigurationError`` for invalid options.
    """

    #: Peers are other processes: a node on it keeps its state on disk (base.py).
    remote = True

    def __init__(
        self,
        node_id: str,
        members: Mapping[str, tuple[str, int]],
        *,
        cluster_id: str,
        secret: bytes,
        frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
        outbox_max: int = OUTBOX_MAX_DEFAULT,
        inbox_max: int = INBOX_MAX_DEFAULT,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        connect_backoff_s: tuple[float, float] = CONNECT_BACKOFF_S_DEFAULT,
        connect_timeout_s: float = CONNECT_TIMEOUT_S_DEFAULT,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S_DEFAULT,
        handshakes_max: int = HANDSHAKES_MAX_DEFAULT,
        handshakes_per_address_max: int = HANDSHAKES_PER_ADDRESS_MAX_DEFAULT,
        warning_interval_s: float = WARNING_INTERVAL_S_DEFAULT,
    ) -> None:
        self._members = _check_members(node_id, members)
        if not (isinstance(cluster_id, str) and cluster_id):
            raise ConfigurationError(f"cluster_id must be a non-empty str, got {cluster_id!r}")
        if not (isinstance(secret, bytes) and len(secret) >= SECRET_BYTES_MIN):
            raise ConfigurationError(f"secret must be bytes, at least {SECRET_BYTES_MIN} long")
        for name, value, low in (
            ("frame_bytes_max", frame_bytes_max, HANDSHAKE_FRAME_BYTES_MAX),
            ("outbox_max", outbox_max, 1),
            ("inbox_max", inbox_max, 1),
            ("handshakes_max", handshakes_max, 1),
            ("handshakes_per_address_max", handshakes_per_address_max, 1),
        ):
            if not (type(value) is int and value >= low):
                raise ConfigurationError(f"{name} must be an int >= {low}, got {value!r}")
        first, cap = connect_backoff_s
        if not (0 < first <= cap):
            raise ConfigurationError(
                "connect_backoff_s must be (first, cap) with 0 < first <= cap, "
                f"got {connect_backoff_s}"
            )
        for name, timeout in (
            ("connect_timeout_s", connect_timeout_s),
            ("handshake_timeout_s", handshake_timeout_s),
            ("warning_interval_s", warning_interval_s),
        ):
            if not timeout > 0:
                raise ConfigurationError(f"{name} must be > 0, got {timeout!r}")
        if (ssl_server is None) != (ssl_client is None):
            raise ConfigurationError(
                "give both ssl_server and ssl_client or neither: a node both listens and dials"
            )
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._secret = secret
        self._frame_bytes_max = frame_bytes_max
        self._inbox_max = inbox_max
        self._outbox_max = outbox_max
        self._ssl_server = ssl_server
        self._ssl_client = ssl_client
        self._backoff_s = (float(first), float(cap))
        self._connect_timeout_s = connect_timeout_s
        self._handshake_timeout_s = handshake_timeout_s
        self._links = {
            peer: _Link(peer, address, node_id < peer, outbox_max)
            for peer, address in self._members.items()
            if peer != node_id
        }
        self._rng = random.Random()  # backoff jitter only
        self._stats = TcpStats()
        self._changed = asyncio.Event()
        self._inbox: deque[Envelope] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: Connections that stopped reading because the inbox was full.
        self._paused: set[_SessionReader] = set()
        self._receiver: Receiver | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()  # accepted connections
        self._pending: PendingHandshakes[_FrameStream] = PendingHandshakes(
            total_max=handshakes_max, per_address_max=handshakes_per_address_max
        )
        self._warnings = WarningLimiter(log, node_id, warning_interval_s)
        self._closed = False
        #: Links with ``pending`` frames; one ``_flush`` is scheduled for them all.
        self._dirty: list[_Link] = []

    # ------------------------------------------------------------------- API

    @property
    def address(self) -> str:
        return self._node_id

    @property
    def stats(self) -> TcpStats:
        """Live counters (see ``TcpStats``)."""
        return self._stats

    @property
    def listen_address(self) -> tuple[str, int]:
        return self._members[self._node_id]

    @property
    def closed(self) -> bool:
        return self._closed

    def members(self) -> dict[str, tuple[str, int]]:
        """Every member's address now (this node included): what ``set_members`` last made."""
        return dict(self._members)

    def add_peer(self, peer: str, address: tuple[str, int]) -> None:
        """Make ``peer`` a member at ``address``: dial it (lower id dials) or admit its dials.

        A known peer at another address is moved there (its connection is
        dropped and made again). Raises ``ConfigurationError`` for a bad id
        or address, or for this node's own id.
        """
        if peer == self._node_id:
            raise ConfigurationError(f"{peer!r} is this node: it is not its own peer")
        address = _check_members(
            self._node_id, {self._node_id: self.listen_address, peer: address}
        )[peer]
        link = self._links.get(peer)
        if link is not None:
            if link.address == address:
                return
            self._drop_link(link, "its address changed")
        self._members[peer] = address
        link = self._links[peer] = _Link(peer, address, self._node_id < peer, self._outbox_max)
        log.info("%s: member %s added at %s:%d", self._node_id, peer, *address)
        if link.dials and self._server is not None and not self._closed:
            link.dial_task = asyncio.get_running_loop().create_task(
                self._dial_loop(link), name=f"paxostob-dial-{self._node_id}->{peer}"
            )
        self._changed.set()

    def remove_peer(self, peer: str) -> None:
        """``peer`` is no longer a member: stop dialing it, close its connection, refuse it.

        Frames queued for it are dropped; later ``send``s to it count as
        ``dropped_unknown_dst``. Unknown ids are ignored (idempotent).
        """
        link = self._links.pop(peer, None)
        if link is None:
            return
        self._members.pop(peer, None)
        self._drop_link(link, "removed from the membership")
        log.info("%s: member %s removed", self._node_id, peer)
        self._changed.set()

    def set_members(self, members: Mapping[str, tuple[str, int]]) -> None:
        """Make the membership ``members`` (id -> address): add, move and remove peers.

        This node's own entry is ignored (it keeps listening where it
        started, also when it was removed: it then has no peers). Raises
        ``ConfigurationError`` for a bad id or address, changing nothing.
        """
        wanted = {p: a for p, a in members.items() if p != self._node_id}
        _check_members(self._node_id, {**wanted, self._node_id: self.listen_address})
        for peer in [p for p in self._links if p not in wanted]:
            self.remove_peer(peer)
        for peer, address in wanted.items():
            self.add_peer(peer, address)

    def connected_peers(self) -> frozenset[str]:
        """Peers with an authenticated connection right now."""
        return frozenset(p for p, link in self._links.items() if link.connected)

    def peer_socket(self, peer: str) -> object | None:
        """The socket of the connection to ``peer`` now (None while there is none).

        For readings the kernel keeps per connection (``TCP_INFO``: its
        round-trip time, bytes sent and received); do not read or write it.
        """
        link = self._links.get(peer)
        sock = None if link is None else link.socket
        return None if sock is None else sock.get_extra_info("socket")

    def outbox_len(self, peer: str) -> int:
        """Frames waiting for ``peer`` (0 for an unknown peer)."""
        link = self._links.get(peer)
        return 0 if link is None else len(link.outbox)

    async def wait_until(self, predicate: Callable[[TcpStats], bool]) -> TcpStats:
        """Wait until ``predicate(stats)`` holds (checked whenever a counter or a
        connection changes); bound it with ``asyncio.timeout``."""
        while not predicate(self._stats):
            self._changed.clear()
            await self._changed.wait()
        return self._stats

    async def start(self) -> None:
        """Listen on this node's address and start dialing; idempotent.

        Raises ``ConfigurationError`` if the address cannot be bound (taken,
        not local), ``NotRunningError`` after ``close()``.
        """
        if self._closed:
            raise NotRunningError("a closed TcpTransport cannot be started again; make a new one")
        if self._server is not None:
            return
        host, port = self.listen_address
        try:
            self._server = await asyncio.start_server(
                self._on_accept,
                host,
                port,
                ssl=self._ssl_server,
                ssl_handshake_timeout=self._handshake_timeout_s if self._ssl_server else None,
            )
        except OSError as e:
            raise ConfigurationError(
                f"node {self._node_id!r} cannot listen on {host}:{port}: {e.strerror or e}"
            ) from e
        loop = asyncio.get_running_loop()
        for link in self._links.values():
            if link.dials:
                link.dial_task = loop.create_task(
                    self._dial_loop(link), name=f"paxostob-dial-{self._node_id}->{link.peer}"
                )

    def send(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for ``envelope.dst``; never blocks nor raises.

        Works before ``start()`` (frames wait in the outbox); a no-op after
        ``close()``.
        """
        if self._closed:
            return
        stats = self._stats
        dst = envelope.dst
        if dst == self._node_id:
            if self._receiver is not None:
                # Not from inside send (the caller may not expect re-entry);
                # call_soon keeps messages to self in send order.
                stats.looped_back += 1
                asyncio.get_running_loop().call_soon(self._loop_back, envelope)
            elif len(self._inbox) >= self._inbox_max:
                stats.dropped_inbox += 1
            else:
                self._inbox.append(envelope)
                stats.looped_back += 1
                self._wake_one()
            self._changed.set()
            return
        link = self._links.get(dst)
        if link is None:
            stats.dropped_unknown_dst += 1
            self._changed.set()
            return
        try:
            head, tail = encode_message_parts(envelope.message)
        except (ValueError, TypeError) as e:
            stats.dropped_too_large += 1
            self._changed.set()
            log.error("%s: cannot encode a message to %s: %s", self._node_id, dst, e)
            return
        size = len(head) + len(tail)
        if size + 1 > self._frame_bytes_max:
            stats.dropped_too_large += 1
            self._changed.set()
            log.warning(
                "%s: dropped a %s of %d bytes to %s: frame_bytes_max is %d",
                self._node_id,
                type(envelope.message).__name__,
                size,
                dst,
                self._frame_bytes_max,
            )
            return
        outbox = link.outbox
        sock = link.socket
        if tail:
            # Not copied (a snapshot chunk, up to a MiB): the socket writes both buffers.
            frame: _Frame = encode_frame_parts(head, tail)
        else:
            frame = encode_frame(head)
        if (
            sock is not None
            and not outbox
            and not sock.is_closing()
            and sock.get_write_buffer_size() + link.pending_bytes < link.high_water
        ):
            # Nothing queued before it, so order holds; the socket buffer has
            # room, so this cannot bypass the writer's back-pressure. Frames
            # sent in one loop pass leave in one writelines (one syscall).
            if not link.pending:
                if not self._dirty:
                    asyncio.get_running_loop().call_soon(self._flush)
                self._dirty.append(link)
            if isinstance(frame, bytes):
                link.pending.append(frame)
            else:
                link.pending.extend(frame)
            link.pending_bytes += HEADER_BYTES + size
            stats.sent += 1
            self._changed.set()
            return
        if len(outbox) == outbox.maxlen:
            stats.dropped_outbox += 1  # the append below pushes the oldest out
            self._changed.set()
        outbox.append(frame)
        link.has_frames.set()

    def flush(self) -> None:
        """Write the frames ``send`` took the direct way now, not at the end of this loop pass.

        For a caller about to block the loop (a save on the loop) whose
        messages should travel meanwhile.
        """
        if self._dirty:
            self._flush()

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Push each arriving envelope to ``receiver`` instead of the inbox (``None``: undo).

        Envelopes already in the inbox are handed to ``receiver`` first, in
        order, before this returns. See transport/base.py for the contract.
        """
        self._receiver = receiver
        if receiver is None or self._closed:
            return
        inbox = self._inbox
        while inbox and self._receiver is receiver:
            receiver(inbox.popleft())
        self._resume_readers()

    async def receive(self) -> Envelope:
        """The next envelope from any peer (or self), waiting if there is none.

        Raises ``TransportClosedError`` once the transport is closed, also in
        a ``receive`` that was waiting when ``close`` was called.
        """
        while True:
            if self._closed:
                raise TransportClosedError(f"transport {self._node_id!r} is closed")
            if self._inbox:
                envelope = self._inbox.popleft()
                if self._paused:
                    self._resume_readers()
                return envelope
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken and cancelled at once: pass the wake-up on, or an
                # envelope would sit in the inbox while another receive sleeps.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def close(self) -> None:
        """Stop listening, cancel every task, close every socket; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._inbox.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self._paused.clear()  # their sessions are cancelled below
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = [link.dial_task for link in self._links.values() if link.dial_task is not None]
        tasks += self._handlers
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for link in self._links.values():
            link.outbox.clear()
            link.pending = []
            link.pending_bytes = 0
            link.connected = False
        if server is not None:
            await server.wait_closed()
        self._warnings.close()
        self._changed.set()

    # ------------------------------------------------------------- internals

    def _drop_link(self, link: _Link, why: str) -> None:
        """End ``link``'s dial loop and connection and drop its frames (it left ``_links``)."""
        for task in (link.dial_task, link.session):
            if task is not None and not task.done():
                task.cancel()
        link.dial_task = None
        link.outbox.clear()
        link.pending = []
        link.pending_bytes = 0
        if link in self._dirty:
            self._dirty.remove(link)
        sock = link.socket
        link.socket = None
        if sock is not None:
            sock.abort()
        if link.connected:
            log.info("%s: dropped the connection to %s: %s", self._node_id, link.peer, why)
        link.connected = False

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _loop_back(self, envelope: Envelope) -> None:
        if self._closed:
            return
        receiver = self._receiver
        if receiver is not None:
            receiver(envelope)
        elif len(self._inbox) >= self._inbox_max:
            self._stats.dropped_inbox += 1  # the receiver was unset meanwhile
            self._changed.set()
        else:
            self._inbox.append(envelope)
            self._wake_one()

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for link in dirty:
            self._flush_link(link)

    def _flush_link(self, link: _Link) -> None:
        pending = link.pending
        if not pending:
            return
        link.pending = []
        link.pending_bytes = 0
        sock = link.socket
        if sock is not None and not sock.is_closing():
            sock.writelines(pending)
        # Else the connection broke within this loop pass: the frames are lost
        # with it, like those its socket buffer held (Paxos tolerates loss).

    def _has_room(self) -> bool:
        """Whether a connection may hand over one more envelope now."""
        return self._receiver is not None or len(self._inbox) < self._inbox_max

    def _resume_readers(self) -> None:
        for reader in list(self._paused):
            if not self._has_room():
                return
            reader.pump()

    def _deliver(self, peer: str, message: Message) -> None:
        """Hand a message from ``peer``'s connection to the receiver or the inbox (room checked)."""
        if peer not in self._links:
            # Its connection is closing: it was removed from the membership.
            self._stats.dropped_removed_peer += 1
            self._changed.set()
            return
        if message.sender != peer:
            self._stats.bad_senders += 1
            self._changed.set()
            log.warning(
                "%s: dropped a %s from %s claiming sender %r",
                self._node_id,
                type(message).__name__,
                peer,
                message.sender,
            )
            return
        envelope = Envelope(self._node_id, message)
        self._stats.received += 1
        self._changed.set()
        receiver = self._receiver
        if receiver is not None:
            # The push path: no inbox, no wake-up of a receive() task.
            receiver(envelope)
        else:
            self._inbox.append(envelope)
            self._wake_one()

    def _jitter(self, delay_s: float) -> float:
        return delay_s * (0.5 + 0.5 * self._rng.random())

    # -- dialing

    async def _dial_loop(self, link: _Link) -> None:
        first, cap = self._backoff_s
        delay = first
        while True:
            stream = await self._dial(link)
            if stream is None:
                await asyncio.sleep(self._jitter(delay))
                delay = min(delay * 2, cap)
                continue
            delay = first
            await self._session(link, stream)
            # Lost: the peer may be restarting. Retry soon, but never in a hot loop.
            await asyncio.sleep(self._jitter(first))

    async def _dial(self, link: _Link) -> _FrameStream | None:
        """An authenticated connection to ``link.peer``, or None (counted and logged)."""
        host, port = link.address
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if self._ssl_client is None:
                    reader, writer = await asyncio.open_connection(host, port)
                else:
                    reader, writer = await asyncio.open_connection(
                        host,
                        port,
                        ssl=self._ssl_client,
                        ssl_handshake_timeout=self._handshake_timeout_s,
                    )
        except (OSError, TimeoutError) as e:
            self._stats.connect_failures += 1
            self._changed.set()
            log.debug(
                "%s: cannot connect to %s at %s:%d: %s", self._node_id, link.peer, host, port, e
            )
            return None
        stream = _FrameStream(reader, writer, HANDSHAKE_FRAME_BYTES_MAX)
        try:
            async with asyncio.timeout(self._handshake_timeout_s):
                await self._handshake_as_dialer(stream, link.peer)
        except (HandshakeError, DecodeError, OSError, TimeoutError) as e:
            stream.abort()
            self._auth_failed(stream, f"handshake with {link.peer!r} failed", e)
            return None
        except BaseException:
            stream.abort()
            raise
        stream.decoder.frame_bytes_max = self._frame_bytes_max
        return stream

    async def _handshake_as_dialer(self, stream: _FrameStream, peer: str) -> None:
        me, cluster = self._node_id, self._cluster_id
        nonce = new_nonce()
        stream.write(encode_hello(Hello(cluster, me, peer, nonce)))
        theirs = decode_hello(await stream.read())
        check_listener_hello(theirs, cluster_id=cluster, dialer=me, listener=peer)
        args = (cluster, me, peer, nonce, theirs.nonce)
        stream.write(encode_proof(proof(self._secret, "dialer", *args)))
        verify_proof(proof(self._secret, "listener", *args), decode_proof(await stream.read()))

    # -- listening

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback that starts our own task: asyncio 3.11 logs an error
        # when a cancelled client_connected_cb task ends, and close() cancels.
        # Nothing here waits: a stranger's connection costs the accept path a
        # few dictionary operations, never a peer's turn.
        if self._closed:
            writer.transport.abort()
            return
        stream = _FrameStream(reader, writer, HANDSHAKE_FRAME_BYTES_MAX)
        self._stats.accepted += 1
        self._changed.set()
        pending = self._pending
        served, closing = pending.admit(stream.address, stream, self._peek)
        for older in closing:
            if older.claimed_as is None:
                why = "closed before its Hello to make room for a newer connection"
            else:
                why = f"a newer connection claims to be {older.claimed_as!r}"
            self._push_out(older, why)
        if not served:
            stream.abort()
            self._stats.handshakes_refused += 1
            self._warnings.warn(
                stream.address,
                f"closed a connection from {stream.name} at once: "
                f"{pending.count(stream.address)} handshakes in progress from "
                f"{stream.address} (handshakes_per_address_max {pending.per_address_max}), "
                f"{len(pending)} in all (handshakes_max {pending.total_max}), "
                "every one past its Hello",
            )
            return
        task = asyncio.get_running_loop().create_task(
            self._serve(stream), name=f"paxostob-accepted-{self._node_id}"
        )
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _peek(self, stream: _FrameStream) -> str | None:
        """The member whose acceptable Hello already waits in ``stream``'s socket, if one does.

        Read with ``MSG_PEEK``: the bytes stay for the handshake to read. Asked
        before a handshake is pushed out: a flood of connections from one
        address is accepted up to a hundred per loop pass, faster than the
        handshakes are given their first bytes, and without this a peer's
        connection could be pushed out with its ``Hello`` (sent in its first
        packet) already there. (With TLS the socket holds ciphertext: a
        stranger must finish a TLS handshake before it is counted here.)
        """
        if self._ssl_server is not None:
            return None
        sock = stream.writer.get_extra_info("socket")
        if sock is None:
            return None
        try:
            # A view of the transport's descriptor: detached, never closed here.
            view = socket.socket(fileno=sock.fileno())
        except OSError:
            return None
        try:
            data = view.recv(HEADER_BYTES + HANDSHAKE_FRAME_BYTES_MAX, _PEEK_NOW)
        except OSError:  # nothing there yet (BlockingIOError), or a reset
            return None
        finally:
            view.detach()
        member = self._hello_from(data)
        if member is not None:
            stream.claimed_as = member
        return member

    def _hello_from(self, data: bytes) -> str | None:
        """The member whose acceptable Hello is the first frame of ``data``, if one is."""
        decoder = FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX)
        decoder.feed(data)
        try:
            payload = decoder.next_payload()
            if payload is None:
                return None
            hello = decode_hello(payload)
            check_dialer_hello(
                hello, cluster_id=self._cluster_id, listener=self._node_id, members=self._links
            )
        except (DecodeError, HandshakeError):
            return None  # the handshake reads it again, and says what is wrong
        return hello.sender

    async def _serve(self, stream: _FrameStream) -> None:
        """Run one accepted connection: the handshake, then the session."""
        try:
            try:
                async with asyncio.timeout(self._handshake_timeout_s):
                    peer = await self._handshake_as_listener(stream)
            except (HandshakeError, DecodeError, OSError, TimeoutError) as e:
                stream.abort()
                error: BaseException = e
                if stream.pushed_out is not None:
                    error = ConnectionAbortedError(stream.pushed_out)
                self._auth_failed(stream, "refused a connection", error)
                return
            finally:
                self._pending.remove(stream)
            stream.decoder.frame_bytes_max = self._frame_bytes_max
            link = self._links.get(peer)
            if link is None:
                # Removed from the membership while its handshake ran.
                gone = HandshakeError(f"node {peer!r} is no longer a member")
                self._auth_failed(stream, "refused a connection", gone)
                return
            old = link.session
            if old is not None and not old.done():
                log.info("%s: %s reconnected; dropping its old connection", self._node_id, peer)
                old.cancel()
                await asyncio.wait({old})
            await self._session(link, stream)
        finally:
            stream.abort()

    async def _handshake_as_listener(self, stream: _FrameStream) -> str:
        me, cluster = self._node_id, self._cluster_id
        theirs = decode_hello(await stream.read())
        check_dialer_hello(theirs, cluster_id=cluster, listener=me, members=self._links)
        peer = theirs.sender
        stream.claimed_as = peer
        older = self._pending.claim(stream, peer)  # no longer pushed out by newcomers
        if older is not None:
            self._push_out(older, f"a newer connection claims to be {peer!r}")
        nonce = new_nonce()
        stream.write(encode_hello(Hello(cluster, me, peer, nonce)))
        args = (cluster, peer, me, theirs.nonce, nonce)
        verify_proof(proof(self._secret, "dialer", *args), decode_proof(await stream.read()))
        stream.write(encode_proof(proof(self._secret, "listener", *args)))
        return peer

    def _push_out(self, stream: _FrameStream, why: str) -> None:
        """Close a handshake that a newer connection replaces; its task logs it."""
        stream.pushed_out = why
        stream.abort()  # the handshake's next read fails
        self._stats.handshakes_pushed_out += 1

    def _auth_failed(self, stream: _FrameStream, what: str, error: BaseException) -> None:
        self._stats.auth_failures += 1
        self._changed.set()
        why = "timed out" if isinstance(error, TimeoutError) else str(error) or type(error).__name__
        # Rate-limited by source address: a stranger's connections are cheap
        # to make, and one log line each would let it flood the log.
        self._warnings.warn(stream.address, f"{what} ({stream.name}): {why}")

    # -- an authenticated connection

    async def _session(self, link: _Link, stream: _FrameStream) -> None:
        """Run an authenticated connection until it breaks or the task is cancelled."""
        link.session = asyncio.current_task()
        link.connected = True
        link.connects += 1
        self._stats.connects += 1
        if link.connects > 1:
            self._stats.reconnects += 1
        self._changed.set()
        log.info("%s: connected to %s (%s)", self._node_id, link.peer, stream.name)
        sock = stream.writer.transport
        link.socket = sock
        link.high_water = sock.get_write_buffer_limits()[1]
        loop = asyncio.get_running_loop()
        reader = _SessionReader(self, link.peer, stream)
        writing = loop.create_task(self._write_loop(link, stream))
        try:
            await reader.attach()
            await asyncio.wait({reader.done, writing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if link.socket is sock:
                link.socket = None  # from now on send queues, for the next connection
            error = reader.detach()
            writing.cancel()
            stream.abort()
            await asyncio.wait({writing})
            if error is not None:
                self._log_session_end(link, stream, error)
            if not writing.cancelled():
                self._log_session_end(link, stream, writing.exception())
            if link.session is asyncio.current_task():
                link.session = None
                link.connected = False
            self._changed.set()

    def _log_session_end(
        self, link: _Link, stream: _FrameStream, error: BaseException | None
    ) -> None:
        if isinstance(error, DecodeError):
            self._stats.bad_frames += 1
            log.warning(
                "%s: bad frame from %s (%s), closing: %s",
                self._node_id,
                link.peer,
                stream.name,
                error,
            )
        elif isinstance(error, OSError):
            log.info("%s: lost %s (%s): %s", self._node_id, link.peer, stream.name, error)
        elif error is not None:  # pragma: no cover - a bug here: say so, keep the node up
            log.error("%s: connection to %s failed", self._node_id, link.peer, exc_info=error)

    async def _write_loop(self, link: _Link, stream: _FrameStream) -> None:
        outbox, has_frames, writer = link.outbox, link.has_frames, stream.writer
        while True:
            if not outbox:
                has_frames.clear()
                await has_frames.wait()
                continue
            self._flush_link(link)  # frames sent the direct way go first
            count = min(len(outbox), WRITE_BATCH_MAX)
            buffers: list[bytes] = []
            for _ in range(count):
                frame = outbox.popleft()
                if isinstance(frame, bytes):
                    buffers.append(frame)
                else:
                    buffers.extend(frame)
            writer.writelines(buffers)
            self._stats.sent += count
            self._changed.set()
            await writer.drain()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._server else "new"
        peers = ",".join(sorted(self.connected_peers()))
        return f"TcpTransport({self._node_id!r}, {state}, connected=[{peers}])"


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` (a member's address as a configuration holds it) -> ``(host, port)``.

    ``[::1]:7001`` for IPv6. Raises ``ConfigurationError`` naming the text.
    """
    host, colon, port_text = text.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not colon or not host or not 0 < port < 65536:
        raise ConfigurationError(f"bad member address {text!r}: expected HOST:PORT")
    return host, port


def format_address(address: tuple[str, int]) -> str:
    """``(host, port)`` -> ``"host:port"`` (``"[::1]:7001"`` for IPv6), as parse_address reads."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_members(
    node_id: str, members: Mapping[str, tuple[str, int]]
) -> dict[str, tuple[str, int]]:
    if not (isinstance(node_id, str) and node_id):
        raise ConfigurationError(f"node_id must be a non-empty str, got {node_id!r}")
    checked: dict[str, tuple[str, int]] = {}
    for peer, address in members.items():
        if not (isinstance(peer, str) and peer):
            raise ConfigurationError(f"member ids are non-empty str, got {peer!r}")
        try:
            host, port = address
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"member {peer!r}: expected (host, port), got {address!r}"
            ) from None
        if not (isinstance(host, str) and host):
            raise ConfigurationError(f"member {peer!r}: host must be a non-empty str")
        if not (type(port) is int and 0 < port < 65536):
            raise ConfigurationError(f"member {peer!r}: port must be in 1..65535, got {port!r}")
        checked[peer] = (host, port)
    if node_id not in checked:
        raise ConfigurationError(
            f"this node ({node_id!r}) must be one of the members {sorted(checked)}: "
            "it listens on its own address"
        )
    return checked
