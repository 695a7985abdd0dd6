"""``serve``'s wiring of the transport to the configuration (``follow_membership``).

A node that joined was given today's members by ``--join``, then replays the
log from its founding configuration on: the transport must keep the members
it was given while the older configurations go by (else it would cut itself
off from the members it learns from), add the members each change adds, and
drop exactly the ones a change removes. The transport is a real
``TcpTransport`` (not started: nothing is dialed); the node is a stand-in that
hands ``follow_membership`` the configurations a replay goes through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from paxostob import Membership
from paxostob.cli.serve import follow_membership
from paxostob.transport.tcp import TcpTransport

SECRET = b"follow-membership-secret-0123456789"


def addr(i: int) -> tuple[str, int]:
    return ("127.0.0.1", 7000 + i)


def config(voters: str, learners: str = "", with_address: str = "") -> Membership:
    return Membership(
        tuple(voters),
        tuple(learners),
        {m: f"127.0.0.1:{7000 + int(m)}" for m in with_address},
        1,
    )


@dataclass
class Node:
    """What ``follow_membership`` uses of a ``TotalOrderBroadcast``."""

    address: str
    now: Membership
    callbacks: list[Callable[[Membership], None]] = field(default_factory=list)

    def members(self) -> Membership:
        return self.now

    def on_membership(self, callback: Callable[[Membership], None]) -> None:
        self.callbacks.append(callback)

    def takes_effect(self, m: Membership) -> None:
        self.now = m
        for callback in self.callbacks:
            callback(m)


async def test_a_joined_node_keeps_todays_members_while_it_replays_older_configurations() -> None:
    # Founded by 1, 2, 3; replaced since by 4, 5, 6; node 7 joins: --join gave it 4-7.
    given = {str(i): addr(i) for i in (4, 5, 6, 7)}
    transport = TcpTransport("7", given, cluster_id="c", secret=SECRET)
    node = Node("7", config("123"))  # its log starts at the founding configuration
    follow_membership(node, transport)  # type: ignore[arg-type]
    assert transport.members() == given
    history = [
        config("123", "4", "4"),
        config("1234", "", "4"),
        config("234", "", "4"),  # 1 removed
        config("234", "5", "45"),
        config("2345", "", "45"),
        config("345", "", "45"),  # 2 removed
        config("345", "6", "456"),
        config("3456", "", "456"),
        config("456", "", "456"),  # 3 removed
        config("456", "7", "4567"),  # node 7 added: where it is today
    ]
    for m in history:
        node.takes_effect(m)
        assert set(given) <= set(transport.members()), m
    assert transport.members() == given
    # A change from now on removes exactly its member.
    node.takes_effect(config("46", "7", "467"))
    assert transport.members() == {k: v for k, v in given.items() if k != "5"}


async def test_a_restarted_founder_dials_the_members_its_store_knows() -> None:
    founders = {str(i): addr(i) for i in (1, 2, 3)}
    transport = TcpTransport("1", founders, cluster_id="c", secret=SECRET)
    node = Node("1", config("1234", "5", "45"))  # its store knows 4 and 5 joined
    follow_membership(node, transport)  # type: ignore[arg-type]
    assert transport.members() == {**founders, "4": addr(4), "5": addr(5)}
    node.takes_effect(config("1345", "", "45"))  # 2 removed
    assert set(transport.members()) == {"1", "3", "4", "5"}
