"""``PAXOS.MEMBERS`` and ``PAXOS.MEMBER`` on a real one-node store (durable log, fsync).

The node leads alone, so every change it is asked for is proposed, decided
and put in effect here; a learner it adds never answers (its peers never
start), which is what a learner that has not caught up looks like.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from paxostob.errors import NotLeaderError
from paxostob.resp import membership
from paxostob.resp.membership import MembershipView
from paxostob.resp.protocol import Error

from .test_info_stats import commands, run, sections


def rows(reply: object) -> list[list[object]]:
    assert isinstance(reply, dict), reply
    members = reply[b"members"]
    assert isinstance(members, list)
    return members


async def test_members_then_add_promote_refused_remove(tmp_path: Path) -> None:
    async with commands(tmp_path) as nc:
        assert (await run(nc, "PING")) is not None
        await run(nc, "PAXOS.BROADCAST", "x")  # a leader: itself
        reply = await run(nc, "PAXOS.MEMBERS")
        assert isinstance(reply, dict)
        assert reply[b"node_id"] == b"a" and reply[b"leader_id"] == b"a"
        assert reply[b"founders"] == [b"a"]
        assert rows(reply) == [[b"a", b"voter", b"", -1]]

        added = await run(nc, "PAXOS.MEMBER", "ADD", "b", "127.0.0.1:7002")
        assert [b"b", b"learner", b"127.0.0.1:7002"] in [r[:3] for r in rows(added)]
        info = sections(await run(nc, "INFO", "paxos"))["Paxos"]  # type: ignore[arg-type]
        assert info["config_voters"] == "a" and info["config_learners"] == "b"
        assert info["learner_b"].startswith("address=127.0.0.1:7002,lag=")
        assert int(info["config_effective_slot"]) > 1

        # b never answered the leader: too far behind to vote.
        refused = await run(nc, "PAXOS.MEMBER", "PROMOTE", "b")
        assert isinstance(refused, Error) and refused.text.startswith("ERR promote b refused: ")
        again = await run(nc, "PAXOS.MEMBER", "ADD", "b", "127.0.0.1:7002")
        assert isinstance(again, Error) and "already a member" in again.text

        removed = await run(nc, "PAXOS.MEMBER", "REMOVE", "b")
        assert rows(removed) == [[b"a", b"voter", b"", -1]]
        back = await run(nc, "PAXOS.MEMBER", "ADD", "b", "127.0.0.1:7002")
        assert isinstance(back, Error) and "removed before" in back.text
        last = await run(nc, "PAXOS.MEMBER", "REMOVE", "a")
        assert isinstance(last, Error) and "last voter" in last.text


async def test_members_lists_the_transports_addresses_for_founders(tmp_path: Path) -> None:
    async with commands(tmp_path) as nc:
        membership.set_peer_addresses(nc, lambda: {"a": "127.0.0.1:7001"})
        reply = await run(nc, "PAXOS.MEMBERS")
        assert rows(reply) == [[b"a", b"voter", b"127.0.0.1:7001", -1]]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["PAXOS.MEMBERS", "x"], "wrong number of arguments"),
        (["PAXOS.MEMBER"], "usage: PAXOS.MEMBER ADD"),
        (["PAXOS.MEMBER", "ADD", "b"], "usage: PAXOS.MEMBER ADD"),
        (["PAXOS.MEMBER", "PROMOTE", "b", "c"], "usage"),
        (["PAXOS.MEMBER", "FROB", "b"], "unknown subcommand 'FROB'"),
        (["PAXOS.MEMBER", "ADD", "b", "nowhere"], "invalid address 'nowhere'"),
        (["PAXOS.MEMBER", "ADD", "b", "h:0"], "invalid address"),
        (["PAXOS.MEMBER", "ADD", "b c", "h:1"], "invalid node id"),
        (["PAXOS.MEMBER", "REMOVE", "x" * 65], "invalid node id"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_is_proposed(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    async with commands(tmp_path) as nc:
        reply = await run(nc, *args)
        assert isinstance(reply, Error) and fragment in reply.text, reply
        assert nc.tob.members().learners == ()


async def test_a_follower_answers_notleader_naming_the_leader(tmp_path: Path) -> None:
    async with commands(tmp_path) as nc:

        async def refused(leader: str | None) -> MembershipView:
            raise NotLeaderError("membership changes are proposed at the leader", leader)

        reply = await membership._changed(nc, lambda: refused("b"), "remove c")
        assert reply == Error("NOTLEADER remove c: ask the leader, node b")
        reply = await membership._changed(nc, lambda: refused(None), "remove c")
        assert isinstance(reply, Error) and reply.text.startswith("TRYAGAIN no leader")
