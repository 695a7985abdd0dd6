"""TcpTransport under membership change: a new member is dialed and admitted, a removed one refused.

The runtime calls ``add_peer``/``remove_peer``/``set_members`` when a new
configuration takes effect (``TotalOrderBroadcast.on_membership``). What must
hold on the peer port: a node added to the membership is admitted to the
handshake with the cluster secret (and dialed, when this node has the lower
id); a node removed is disconnected and every later handshake of it is
refused, though it still knows the secret. Real sockets on 127.0.0.1; every
wait is on the transport's counters, under a timeout.
"""

from __future__ import annotations

import asyncio

import pytest

from paxostob.errors import ConfigurationError
from paxostob.transport.auth import (
    Hello,
    decode_hello,
    encode_hello,
    encode_proof,
    new_nonce,
    proof,
)
from paxostob.transport.tcp import TcpTransport, parse_address

from .conformance import envelope
from .test_tcp import (
    CLUSTER,
    SECRET,
    WAIT_S,
    close_all,
    exchange,
    free_members,
    raw_peer,
    until,
    until_connected,
    until_disconnected,
)


def _transport(node_id: str, members: dict[str, tuple[str, int]]) -> TcpTransport:
    # A short backoff cap: a refused dialer retries often, so refusals are seen quickly.
    return TcpTransport(
        node_id, members, cluster_id=CLUSTER, secret=SECRET, connect_backoff_s=(0.01, 0.05)
    )


async def test_a_new_member_that_dials_is_refused_until_added_then_admitted() -> None:
    # "0" < "1": the new member dials node 1, which must admit it only once added.
    addresses = free_members(["0", "1"])
    old = _transport("1", {"1": addresses["1"]})
    new = _transport("0", addresses)
    try:
        await old.start()
        await new.start()
        await until(old, lambda st: st.auth_failures >= 1)  # unknown node "0"
        assert old.connected_peers() == frozenset()
        old.add_peer("0", addresses["0"])
        await until_connected(old, ["0"])
        await exchange(old, new)
        assert old.members() == addresses
    finally:
        await close_all([old, new])


async def test_an_added_member_with_a_higher_id_is_dialed() -> None:
    addresses = free_members(["1", "2", "3"])
    a = _transport("1", {k: addresses[k] for k in ("1", "2")})
    b = _transport("2", {k: addresses[k] for k in ("1", "2")})
    c = _transport("3", addresses)
    try:
        for t in (a, b, c):
            await t.start()
        await until_connected(a, ["2"])
        a.add_peer("3", addresses["3"])
        b.set_members(addresses)
        await until_connected(c, ["1", "2"])
        await exchange(a, c)
        await exchange(b, c, 2)
    finally:
        await close_all([a, b, c])


async def test_a_removed_member_is_disconnected_and_refused_though_it_knows_the_secret() -> None:
    addresses = free_members(["0", "1"])
    stays = _transport("1", addresses)
    removed = _transport("0", addresses)  # it keeps dialing: it does not know it was removed
    try:
        await stays.start()
        await removed.start()
        await until_connected(stays, ["0"])
        await exchange(stays, removed)
        refused = stays.stats.auth_failures
        stays.remove_peer("0")
        await until_disconnected(stays, "0")
        # It dials again and again: every handshake is refused now.
        await until(stays, lambda st: st.auth_failures >= refused + 3)
        assert stays.connected_peers() == frozenset()
        assert "0" not in stays.members()
        dropped = stays.stats.dropped_unknown_dst
        stays.send(envelope("1", "0", 1))
        assert stays.stats.dropped_unknown_dst == dropped + 1
        # Added back (a new incarnation at the same id is the core's business): admitted again.
        stays.add_peer("0", addresses["0"])
        await until_connected(stays, ["0"])
    finally:
        await close_all([stays, removed])


async def test_a_removed_member_with_a_higher_id_is_no_longer_dialed() -> None:
    addresses = free_members(["1", "2"])
    dialer = _transport("1", addresses)
    listener = _transport("2", addresses)
    try:
        await dialer.start()
        await listener.start()
        await until_connected(dialer, ["2"])
        dialer.set_members({"1": addresses["1"]})
        await until_disconnected(listener, "1")
        assert dialer.connected_peers() == frozenset()
        # Its dial loop ended with the removal (not merely the connection).
        dials = [t.get_name() for t in asyncio.all_tasks() if not t.done()]
        assert "paxostob-dial-1->2" not in dials, dials
        assert dialer.stats.connects == 1
    finally:
        await close_all([dialer, listener])


def test_membership_calls_check_their_input() -> None:
    addresses = free_members(["1"])
    t = _transport("1", addresses)
    with pytest.raises(ConfigurationError, match="not its own peer"):
        t.add_peer("1", addresses["1"])
    with pytest.raises(ConfigurationError, match="port"):
        t.add_peer("2", ("127.0.0.1", 0))
    with pytest.raises(ConfigurationError, match="port"):
        t.set_members({"2": ("127.0.0.1", 1), "3": ("127.0.0.1", 70000)})
    assert t.members() == addresses  # the bad call changed nothing
    t.remove_peer("9")  # unknown: ignored
    assert parse_address("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert parse_address("[::1]:7001") == ("::1", 7001)
    for bad in ("127.0.0.1", ":7001", "h:0", "h:x", "h:65536"):
        with pytest.raises(ConfigurationError, match="HOST:PORT"):
            parse_address(bad)


async def test_removing_a_member_being_dialed_ends_its_dial_loop() -> None:
    addresses = free_members(["1", "2"])  # nobody listens at node 2's port
    dialer = _transport("1", addresses)
    try:
        await dialer.start()
        await until(dialer, lambda st: st.connect_failures >= 2)  # it retries
        (loop,) = [t for t in asyncio.all_tasks() if t.get_name() == "paxostob-dial-1->2"]
        dialer.remove_peer("2")
        done, _ = await asyncio.wait({loop}, timeout=WAIT_S)
        assert done == {loop}, "the dial loop of a removed member goes on"
        assert dialer.members() == {"1": addresses["1"]}
    finally:
        await dialer.close()


async def test_a_handshake_that_completes_after_its_member_was_removed_is_closed() -> None:
    addresses = free_members(["0", "1"])
    listener = _transport("1", addresses)
    try:
        await listener.start()
        async with raw_peer(addresses["1"]) as peer:  # it speaks as member "0"
            nonce = new_nonce()
            peer.send_payload(encode_hello(Hello(CLUSTER, "0", "1", nonce)))
            theirs = decode_hello(await peer.read_payload())  # admitted so far
            listener.remove_peer("0")
            args = (CLUSTER, "0", "1", nonce, theirs.nonce)
            peer.send_payload(encode_proof(proof(SECRET, "dialer", *args)))
            await until(listener, lambda st: st.auth_failures >= 1)
            await peer.closed_by_listener()
        assert listener.stats.connects == 0
        assert listener.connected_peers() == frozenset()
    finally:
        await listener.close()
