"""Strangers on the peer port: they must not keep a node from its peers, nor flood its log.

A stranger here is anyone who can open TCP connections to a node's peer
port without the cluster secret: it connects and sends nothing, garbage or
half a frame, and reconnects the moment it is closed. The attacker is
bounded in connections (``Attack.connections_max``) and stops when told;
tests wait on the transports' counters and on the attacker's own counters,
never on a sleep. Everything runs on 127.0.0.1, so the strangers share
their source address with the real peers: the hardest case for a limit per
address.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

import pytest

from paxostob.transport.auth import Hello, decode_hello, encode_hello, new_nonce
from paxostob.transport.frames import encode_frame
from paxostob.transport.tcp import HANDSHAKE_TIMEOUT_S_DEFAULT, TcpTransport

from .strangers import attack
from .test_tcp import (
    CLUSTER,
    HOST,
    WAIT_S,
    RawPeer,
    close_all,
    exchange,
    free_members,
    raw_peer,
    start_cluster,
    until,
    until_connected,
)


def warnings_of(node: str, records: Iterable[logging.LogRecord]) -> list[str]:
    return [
        r.getMessage()
        for r in records
        if r.name == "paxostob.transport"
        and r.levelno >= logging.WARNING
        and r.getMessage().startswith(f"{node}:")
    ]


# ------------------------------------------------------------------------------- the attack


async def test_peers_connect_and_talk_while_200_strangers_hold_handshakes_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``c`` is attacked before its peers start: both must still connect to it and talk.

    ``c`` has the highest id, so it dials nobody: every connection it has is
    one it accepted, under attack. The connections are timed (printed), and
    the attacker must still be holding connections when the peers are done.
    """
    caplog.set_level(logging.INFO, logger="paxostob.transport")
    members = free_members("abc")
    _, started = await start_cluster("abc", running="c", members=members)
    c = started["c"]
    peers: dict[str, TcpTransport] = {}
    try:
        async with attack(members["c"], tasks=200, connections_max=20_000) as raid:
            await raid.until_opened(400)  # every kind has been served and reopened
            t0 = time.monotonic()
            _, peers = await start_cluster("abc", running="ab", members=members)
            async with asyncio.timeout(5.0):  # seconds; milliseconds when healthy
                await c.wait_until(lambda _: c.connected_peers() == {"a", "b"})
                await exchange(peers["a"], c, 1)
                await exchange(peers["b"], c, 2)
            took = time.monotonic() - t0
            print(f"peers connected and talked in {took:.3f} s; attack: {raid.opened} connections")
            assert raid.live > 0 and not raid.exhausted, "the attack was over too soon to count"
        warnings = warnings_of("c", caplog.records)
        # One line for the source address in the first interval (10 s): the
        # test is over before a second one is due.
        assert len(warnings) <= 2, warnings[:5]
        assert c.stats.handshakes_pushed_out + c.stats.auth_failures >= 200
    finally:
        await close_all([*peers.values(), c])


def test_peers_connect_through_the_strangers_on_uvloop(caplog: pytest.LogCaptureFixture) -> None:
    """The same on uvloop, the loop ``paxostob serve`` runs (it reads sockets differently)."""
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(
            test_peers_connect_and_talk_while_200_strangers_hold_handshakes_open(caplog)
        )
    finally:
        loop.close()


# ------------------------------------------------------------------------------- the limits


@pytest.mark.parametrize(
    "limit", [{"handshakes_per_address_max": 2}, {"handshakes_max": 2}], ids=lambda d: next(iter(d))
)
async def test_beyond_a_limit_of_claimed_handshakes_a_new_connection_is_closed_at_once(
    limit: dict[str, Any],
) -> None:
    """Two stalled connections past a member's Hello fill a limit of 2: a third is closed."""
    members, ts = await start_cluster(
        "abcd", running="bcd", handshake_timeout_s=WAIT_S * 2, **limit
    )
    d = ts["d"]
    try:
        await until_connected(d, ["b", "c"])  # their handshakes are done: only the raw ones count
        async with raw_peer(members["d"]) as first, raw_peer(members["d"]) as second:
            for raw, claimed in ((first, "a"), (second, "b")):
                raw.send_payload(encode_hello(Hello(CLUSTER, claimed, "d", new_nonce())))
                await raw.read_payload()  # d's Hello: the handshake is claimed
            async with raw_peer(members["d"]) as third:
                async with asyncio.timeout(2.0):  # "at once": not after the deadline
                    await third.closed_by_listener()
            assert d.stats.handshakes_refused == 1
            assert d.stats.handshakes_pushed_out == 0
        await exchange(ts["b"], d)  # a real peer dials d after they are gone
    finally:
        await close_all(ts.values())


async def test_a_new_connection_takes_the_place_of_the_oldest_one_without_a_hello() -> None:
    members, ts = await start_cluster(
        "abc", running="bc", handshakes_per_address_max=2, handshake_timeout_s=WAIT_S * 2
    )
    c = ts["c"]
    try:
        await until_connected(c, ["b"])  # b's handshake is done: only the raw ones count
        accepted = c.stats.accepted
        async with raw_peer(members["c"]) as oldest, raw_peer(members["c"]) as newer:
            await until(c, lambda s: s.accepted == accepted + 2)
            _, a = await start_cluster("abc", running="a", members=members)
            try:
                await until_connected(c, ["a", "b"])
                await exchange(a["a"], c)
                async with asyncio.timeout(2.0):
                    await oldest.closed_by_listener()
                assert c.stats.handshakes_pushed_out == 1
                newer.send_raw(b"\x00")  # still open: the write does not fail
                assert not newer.reader.at_eof()
            finally:
                await close_all(a.values())
    finally:
        await close_all(ts.values())


async def test_a_connection_whose_hello_waits_in_its_socket_is_not_pushed_out() -> None:
    """Both connections reach c's kernel before c's event loop runs: one sent a's Hello.

    c accepts them in one burst and admits each before any of their data
    callbacks run; at the limit of 1 the newer, silent one must not push
    out the one whose Hello is already there (c looks into its socket), so
    the silent one is closed at once instead.
    """
    members, ts = await start_cluster(
        "abc", running="bc", handshakes_per_address_max=1, handshake_timeout_s=WAIT_S * 2
    )
    c = ts["c"]
    try:
        await until_connected(c, ["b"])
        accepted = c.stats.accepted
        # No await from here to the until(): c cannot run in between.
        with_hello = socket.create_connection(members["c"], timeout=WAIT_S)
        with_hello.sendall(encode_frame(encode_hello(Hello(CLUSTER, "a", "c", new_nonce()))))
        silent = socket.create_connection(members["c"], timeout=WAIT_S)
        for sock in (with_hello, silent):
            sock.setblocking(False)
        first = RawPeer(*await asyncio.open_connection(sock=with_hello))
        second = RawPeer(*await asyncio.open_connection(sock=silent))
        try:
            await until(c, lambda s: s.accepted == accepted + 2)
            await second.closed_by_listener()
            assert decode_hello(await first.read_payload()).sender == "c"
            assert (c.stats.handshakes_refused, c.stats.handshakes_pushed_out) == (1, 0)
        finally:
            first.close()
            second.close()
    finally:
        await close_all(ts.values())


async def test_a_newer_claim_of_the_same_member_takes_the_place_of_the_older() -> None:
    """A stranger who replays a's Hello and stalls holds no slot against a's real dial."""
    members, ts = await start_cluster("abc", running="bc", handshake_timeout_s=WAIT_S * 2)
    c = ts["c"]
    try:
        async with raw_peer(members["c"]) as stalled:
            stalled.send_payload(encode_hello(Hello(CLUSTER, "a", "c", new_nonce())))
            await stalled.read_payload()
            _, a = await start_cluster("abc", running="a", members=members)
            try:
                await until_connected(c, ["a", "b"])
                await exchange(a["a"], c)
                await stalled.closed_by_listener()
                assert c.stats.handshakes_pushed_out == 1
            finally:
                await close_all(a.values())
    finally:
        await close_all(ts.values())


async def test_the_default_deadline_closes_silent_and_stalled_handshakes_within_2_s() -> None:
    """With default options: one connection sends nothing, one stalls after its Hello."""
    members, ts = await start_cluster("abc", running="bc")
    c = ts["c"]
    try:
        async with raw_peer(members["c"]) as silent, raw_peer(members["c"]) as stalled:
            t0 = time.monotonic()
            stalled.send_payload(encode_hello(Hello(CLUSTER, "a", "c", new_nonce())))
            await stalled.read_payload()
            async with asyncio.timeout(2.0 + 1.0):  # 2 s, and 1 s for a loaded machine
                await silent.closed_by_listener()
                await stalled.closed_by_listener()
            took = time.monotonic() - t0
            assert took >= HANDSHAKE_TIMEOUT_S_DEFAULT * 0.9, f"closed too early ({took:.2f} s)"
        assert c.stats.auth_failures == 2
        await exchange(ts["b"], c)
    finally:
        await close_all(ts.values())


# ----------------------------------------------------------------------------- the warnings


async def test_warnings_about_one_address_are_one_line_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="paxostob.transport")
    members, ts = await start_cluster("abc", running="bc", warning_interval_s=0.3)
    c = ts["c"]
    try:
        for _ in range(20):
            async with raw_peer(members["c"]) as raw:
                raw.send_raw(b"GET / HTTP/1.1\r\n\r\n")
                await raw.closed_by_listener()
        await until(c, lambda s: s.auth_failures == 20)
        lines = await until_logged(caplog, "c", 2)
        assert "bad frame" in lines[0] or "frame" in lines[0], lines
        assert f"19 more from {HOST} not logged" in lines[1], lines
        assert len(warnings_of("c", caplog.records)) == 2
    finally:
        await close_all(ts.values())


async def until_logged(caplog: pytest.LogCaptureFixture, node: str, n: int) -> list[str]:
    """The first ``n`` warnings of ``node``, waiting (bounded) for them to be logged."""
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Wake(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            loop.call_soon_threadsafe(arrived.set)

    handler = Wake()
    logging.getLogger("paxostob.transport").addHandler(handler)
    try:
        async with asyncio.timeout(WAIT_S):
            while len(lines := warnings_of(node, caplog.records)) < n:
                arrived.clear()
                await arrived.wait()
    finally:
        logging.getLogger("paxostob.transport").removeHandler(handler)
    return lines[:n]
