"""``paxostob member`` and ``serve --join``'s checks: parsing, one-line errors, the replace steps.

The actions run against a RESP server on 127.0.0.1 that keeps a configuration
by the rules the library applies (one change at a time is not modelled; a
promotion is refused while the learner is "behind", a given number of tries),
so what is checked here is the command line's side: which requests it sends,
in which order, what it skips when a step was done, and what it prints.
The real cluster is exercised in tests/integration/test_membership.py.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from paxostob.cli import main
from paxostob.cli import member as member_cli
from paxostob.cli.client import RespClientError
from paxostob.cli.config import ConfigError
from paxostob.cli.join import joined, parse_seeds
from paxostob.cli.member import Member, Members, format_members, parse_members
from paxostob.resp.protocol import Error, Reply, RequestParser, encode


@dataclass
class Model:
    voters: list[str] = field(default_factory=lambda: ["1", "2", "3"])
    learners: list[str] = field(default_factory=list)
    addresses: dict[str, str] = field(
        default_factory=lambda: {i: f"127.0.0.1:700{i}" for i in "123"}
    )
    #: Promotions refused (as "behind") before one succeeds.
    behind: int = 0
    #: A follower: changes are refused naming the leader (this peer address's node).
    follower_of: str | None = None
    password: str | None = None
    requests: list[list[str]] = field(default_factory=list)

    def members(self) -> Reply:
        if self.follower_of is not None:
            return {
                b"cluster_id": b"c1",
                b"node_id": b"2",
                b"leader_id": b"9",
                b"effective_slot": 65,
                b"members": [[b"9", b"voter", self.follower_of.encode(), -1]],
                b"founders": [b"9"],
            }
        rows: list[Reply] = [
            [i.encode(), b"voter", self.addresses[i].encode(), -1] for i in sorted(self.voters)
        ]
        rows += [[i.encode(), b"learner", self.addresses[i].encode(), 7] for i in self.learners]
        return {
            b"cluster_id": b"c1",
            b"node_id": b"1",
            b"leader_id": b"1",
            b"effective_slot": 65,
            b"members": rows,
            b"founders": [b"1", b"2", b"3"],
        }

    def handle(self, args: list[str]) -> Reply:
        self.requests.append(args)
        if args[0] == "AUTH":
            return b"OK" if args[1] == self.password else Error("WRONGPASS invalid password")
        if args[0] == "EXISTS":
            return 0
        if args == ["PAXOS.MEMBERS"]:
            return self.members()
        op, node = args[1], args[2]
        if self.follower_of is not None:
            return Error(f"NOTLEADER {op.lower()} {node}: ask the leader, node 9")
        if op == "ADD":
            if node in self.voters or node in self.learners:
                return Error(f"ERR add learner {node} refused: {node!r} is already a member")
            self.learners.append(node)
            self.addresses[node] = args[3]
        elif op == "PROMOTE":
            if node not in self.learners:
                return Error(f"ERR promote {node} refused: {node!r} is not a learner")
            if self.behind:
                self.behind -= 1
                return Error(f"ERR promote {node} refused: it is 5000 slots behind")
            self.learners.remove(node)
            self.voters.append(node)
        elif op == "REMOVE":
            if node not in self.voters and node not in self.learners:
                return Error(f"ERR remove {node} refused: {node!r} is not a member")
            for group in (self.voters, self.learners):
                if node in group:
                    group.remove(node)
        return self.members()


@contextlib.contextmanager
def serving(m: Model) -> Iterator[int]:
    """``m`` answering RESP on a port of 127.0.0.1 (a leader peer port is 1000 less)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            parser = RequestParser()
            while data := self.request.recv(65536):
                parser.feed(data)
                while (command := parser.parse()) is not None:
                    reply = m.handle([a.decode() for a in command])
                    self.request.sendall(encode(reply, 2))

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def model() -> Iterator[tuple[Model, int]]:
    m = Model()
    with serving(m) as port:
        yield m, port


def test_a_change_asked_of_a_follower_is_asked_again_of_the_leader(
    model: tuple[Model, int], capsys: pytest.CaptureFixture[str]
) -> None:
    leader, leader_port = model
    assert leader_port > 1000
    follower = Model(follower_of=f"127.0.0.1:{leader_port - 1000}")
    with serving(follower) as port:
        code, out, err = run_cli(
            "member", "add", "4", "127.0.0.1:7004", "--port", str(port), capsys=capsys
        )
        assert (code, err) == (0, ""), err
    assert follower.requests == [["PAXOS.MEMBER", "ADD", "4", "127.0.0.1:7004"], ["PAXOS.MEMBERS"]]
    assert leader.requests == [["PAXOS.MEMBER", "ADD", "4", "127.0.0.1:7004"]]
    assert "4      learner" in out


def test_a_redirect_to_a_leader_that_does_not_answer_says_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    follower = Model(follower_of=f"127.0.0.1:{free_port() - 1000}")
    with serving(follower) as port:
        code, _, err = run_cli("member", "remove", "3", "--port", str(port), capsys=capsys)
    assert code == 1 and err.count("\n") == 1
    assert "NOTLEADER remove 3: ask the leader, node 9; asked the leader at 127.0.0.1:" in err
    assert "point --host/--port at the leader's client port" in err


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_prints_voters_and_learners(
    model: tuple[Model, int], capsys: pytest.CaptureFixture[str]
) -> None:
    m, port = model
    m.learners.append("4")
    m.addresses["4"] = "127.0.0.1:7004"
    code, out, err = run_cli("member", "list", "--port", str(port), capsys=capsys)
    assert (code, err) == (0, "")
    assert "cluster c1: leader 1, configuration in effect from slot 65" in out
    assert "  4      learner  127.0.0.1:7004  lag 7 slots" in out
    assert "  2      voter    127.0.0.1:7002" in out


def test_add_promote_remove_send_one_request_each(
    model: tuple[Model, int], capsys: pytest.CaptureFixture[str]
) -> None:
    m, port = model
    p = ("--port", str(port))
    assert run_cli("member", "add", "4", "127.0.0.1:7004", *p, capsys=capsys)[0] == 0
    assert run_cli("member", "promote", "4", *p, capsys=capsys)[0] == 0
    assert run_cli("member", "remove", "2", *p, capsys=capsys)[0] == 0
    assert m.requests == [
        ["PAXOS.MEMBER", "ADD", "4", "127.0.0.1:7004"],
        ["PAXOS.MEMBER", "PROMOTE", "4"],
        ["PAXOS.MEMBER", "REMOVE", "2"],
    ]
    assert sorted(m.voters) == ["1", "3", "4"]


def test_a_refused_change_is_one_line_and_exit_1(
    model: tuple[Model, int], capsys: pytest.CaptureFixture[str]
) -> None:
    _, port = model
    code, out, err = run_cli("member", "promote", "9", "--port", str(port), capsys=capsys)
    assert code == 1 and out == ""
    reason = "ERR promote 9 refused: '9' is not a learner"
    assert err == f"paxostob member promote: 127.0.0.1:{port}: {reason}\n"


def test_the_password_comes_from_the_flag_or_redis_clis_variable(
    model: tuple[Model, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    m, port = model
    m.password = "pw"
    assert run_cli("member", "list", "--port", str(port), "--password", "pw", capsys=capsys)[0] == 0
    monkeypatch.setenv("REDISCLI_AUTH", "pw")
    assert run_cli("member", "list", "--port", str(port), capsys=capsys)[0] == 0
    assert [r for r in m.requests if r[0] == "AUTH"] == [["AUTH", "pw"], ["AUTH", "pw"]]
    code, _, err = run_cli("member", "list", "--port", str(port), "--password", "no", capsys=capsys)
    assert code == 1 and "WRONGPASS" in err and err.count("\n") == 1


def test_replace_removes_adds_then_promotes_once_caught_up(
    model: tuple[Model, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    m, port = model
    m.behind = 2
    monkeypatch.setattr(member_cli, "PROMOTE_RETRY_S", 0.0)
    code, out, err = run_cli(
        "member", "replace", "3", "5", "127.0.0.1:7005", "--port", str(port), capsys=capsys
    )
    assert (code, err) == (0, ""), err
    changes = [r[1:3] for r in m.requests if r[0] == "PAXOS.MEMBER"]
    assert changes == [
        ["REMOVE", "3"],
        ["ADD", "5"],
        ["PROMOTE", "5"],
        ["PROMOTE", "5"],
        ["PROMOTE", "5"],
    ]
    assert sorted(m.voters) == ["1", "2", "5"]
    assert "paxostob serve --id 5 --join" in out
    # Run again: every step is done, nothing is sent but the look.
    m.requests.clear()
    assert (
        run_cli(
            "member", "replace", "3", "5", "127.0.0.1:7005", "--port", str(port), capsys=capsys
        )[0]
        == 0
    )
    assert m.requests == [["PAXOS.MEMBERS"]]


def test_replace_gives_up_after_its_catch_up_timeout(
    model: tuple[Model, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    m, port = model
    m.behind = 10**9
    monkeypatch.setattr(member_cli, "PROMOTE_RETRY_S", 0.0)
    code, _, err = run_cli(
        "member", "replace", "3", "5", "127.0.0.1:7005", "--port", str(port),
        "--catch-up-timeout", "0.2", capsys=capsys,
    )  # fmt: skip
    assert code == 1
    assert "5 was not promoted within 0.2 s" in err and "5000 slots behind" in err
    assert err.count("\n") == 1
    assert "5" in m.learners  # left a learner: running the command again goes on


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["member", "add", "4"], "required: HOST:PORT"),
        (["member", "add", "4", "nowhere"], "bad address 'nowhere'"),
        (["member", "add", "4", "h:70000"], "bad address"),
        (["member", "replace", "3", "3", "h:1"], "OLD and NEW must differ"),
        (["member", "replace", "3", "4", "h:1", "--catch-up-timeout", "0"], "must be > 0"),
        (["member", "list", "--port", "0"], "out of range"),
        (["member", "frob"], "invalid choice"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(*argv, capsys=capsys)
    assert code == 2 and out == ""
    assert fragment in err and err.count("\n") == 1, err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_node_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, _, err = run_cli("member", "list", "--port", str(port), capsys=capsys)
    assert code == 1
    assert err.startswith(f"paxostob member list: 127.0.0.1:{port}: ") and err.count("\n") == 1


def test_a_reply_that_is_not_a_configuration_is_refused() -> None:
    for reply in (b"OK", [b"members"], [b"members", [[b"1"]], b"effective_slot", 1]):
        with pytest.raises(RespClientError, match="unexpected reply"):
            parse_members(reply)


def test_format_members_says_when_a_learners_lag_is_unknown() -> None:
    m = Members("c", "2", "", 1, (Member("4", "learner", "h:1", -1),))
    assert format_members(m) == (
        "cluster c: leader unknown, configuration in effect from slot 1 (as node 2 knows it)\n"
        "  4      learner  h:1  lag unknown (ask the leader)"
    )


# ----------------------------------------------------------------------- serve --join

CONFIG = Members(
    "c1",
    "1",
    "1",
    65,
    (
        Member("1", "voter", "127.0.0.1:7001", -1),
        Member("2", "voter", "127.0.0.1:7002", -1),
        Member("4", "learner", "127.0.0.1:7004", 12),
    ),
    ("1", "2", "3"),
)


def test_join_takes_the_cluster_id_and_every_members_address() -> None:
    j = joined("4", CONFIG, "127.0.0.1:8001", cluster_id=None, store_exists=False)
    assert (j.cluster_id, j.role) == ("c1", "learner")
    assert j.members == "1=127.0.0.1:7001,2=127.0.0.1:7002,4=127.0.0.1:7004"
    assert j.founders == "1,2,3"  # its log is opened with them (node 3 was removed since)


def test_join_never_makes_a_voters_store() -> None:
    with pytest.raises(ConfigError, match=r"voter .* has no store.*member replace 2 NEW_ID"):
        joined("2", CONFIG, "127.0.0.1:8001", cluster_id=None, store_exists=False)
    # A voter that restarts on its own store may name a member to learn the addresses from.
    assert joined("2", CONFIG, "127.0.0.1:8001", cluster_id=None, store_exists=True).role == "voter"


def test_join_refuses_a_node_not_added_and_another_cluster() -> None:
    with pytest.raises(
        ConfigError, match=r"not a member .* paxostob member add 9 HOST:PORT --port 8001"
    ):
        joined("9", CONFIG, "127.0.0.1:8001", cluster_id=None, store_exists=False)
    with pytest.raises(ConfigError, match="cluster 'c1', not --cluster-id 'other'"):
        joined("4", CONFIG, "127.0.0.1:8001", cluster_id="other", store_exists=False)


def test_join_needs_to_know_the_founders() -> None:
    older = Members("c1", "1", "1", 1, CONFIG.members)  # a member that does not list them
    with pytest.raises(ConfigError, match="did not say who founded"):
        joined("4", older, "127.0.0.1:8001", cluster_id=None, store_exists=False)


def test_join_seeds_parse() -> None:
    assert parse_seeds("127.0.0.1:8001, [::1]:8002") == [("127.0.0.1", 8001), ("::1", 8002)]
    for bad in ("127.0.0.1", "h:0", ":1", "h:x"):
        with pytest.raises(ConfigError, match="expected HOST:PORT"):
            parse_seeds(bad)


def test_serve_join_with_no_member_answering_is_one_line_and_exit_2(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    code, _, err = run_cli(
        "serve", "--id", "4", "--join", f"127.0.0.1:{port}", "--data-dir", str(tmp_path),
        "--secret-file", "/nonexistent", capsys=capsys,
    )  # fmt: skip
    assert code == 2
    assert err.startswith("paxostob serve: error: --join: no member answered (127.0.0.1:")
    assert err.count("\n") == 1


def test_serve_join_and_bootstrap_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        "serve", "--id", "4", "--join", "127.0.0.1:1", "--bootstrap", "--data-dir", "d",
        capsys=capsys,
    )  # fmt: skip
    assert code == 2 and "exclude each other" in err
