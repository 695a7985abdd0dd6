"""``--log-format``, the repeat limiter, the monitoring options and ``status``'s quorum line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from paxostob.cli.config import ConfigError, NodeConfig, load_node_config
from paxostob.cli.logs import JsonFormatter, configure_logging
from paxostob.cli.status import quorum_line
from paxostob.node.repeats import RepeatLimiter


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_hold_the_standard_keys_and_the_structured_fields(
    restore_root: None,
) -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", "n2", out)
    log = logging.getLogger("paxostob.test")
    log.info("leader is %s", "n1", extra={"event": "leader_change", "ballot": "3.n1", "slot": 7})
    log.debug("not at INFO")
    try:
        raise ValueError("two\nlines")
    except ValueError:
        log.exception("it failed:\nsee below", extra={"msg_id": 1, "path": Path("/x")})
    log.warning("a field may not replace a key", extra={"node": "forged", "level": "x"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # one line per record, the traceback's newlines escaped
    first, second, third = (json.loads(line) for line in lines)
    assert list(first)[:5] == ["ts", "level", "node", "logger", "msg"]
    assert first["level"] == "INFO" and first["node"] == "n2" and first["logger"] == "paxostob.test"
    assert first["msg"] == "leader is n1"
    assert (first["event"], first["ballot"], first["slot"]) == ("leader_change", "3.n1", 7)
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert second["msg"] == "it failed:\nsee below" and second["level"] == "ERROR"
    assert "ValueError: two\nlines" in second["exc"] and second["path"] == "/x"
    assert (third["node"], third["level"]) == ("n2", "WARNING")


def test_text_lines_are_the_classic_format(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging("INFO", "text", "n2", out)
    logging.getLogger("paxostob.test").info("hello", extra={"event": "x"})
    assert out.getvalue().rstrip().endswith(" INFO node n2 paxostob.test: hello")
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml", "n2", out)


def test_json_formatter_writes_unknown_types_as_text() -> None:
    record = logging.LogRecord("l", logging.INFO, "f", 1, "m", (), None)
    record.__dict__["odd"] = {1, 2}
    assert json.loads(JsonFormatter("n").format(record))["odd"] in ("{1, 2}", "{2, 1}")


def test_the_repeat_limiter_lets_one_line_per_interval_through_with_a_count() -> None:
    now = [0.0]
    limiter = RepeatLimiter(10.0, clock=lambda: now[0], keys_max=2)
    assert limiter.allow("a") == 0
    assert limiter.allow("a") is None
    assert limiter.allow("b") == 0  # another kind: its own interval
    now[0] = 9.99
    assert limiter.allow("a") is None
    now[0] = 10.0
    assert limiter.allow("a") == 2  # the two held back since
    assert limiter.allow("a") is None
    # A third key forgets the others (bounded memory): at worst a repeat gets through.
    assert limiter.allow("c") == 0
    assert limiter.allow("a") == 0
    assert RepeatLimiter.suffix(0) == ""
    assert RepeatLimiter.suffix(3) == " (3 more like this since the last one logged)"


def _cfg(tmp_path: Path, **flags: object) -> NodeConfig:
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123")
    base: dict[str, object] = {
        "id": "1",
        "members": "1=127.0.0.1:7001,2=127.0.0.1:7002",
        "data_dir": str(tmp_path),
        "secret_file": str(secret),
    }
    return load_node_config({**base, **flags}, None)


def test_monitoring_options_have_defaults_and_are_checked(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert cfg.metrics_port is None and cfg.log_format == "text" and cfg.reads == "read-index"
    assert _cfg(tmp_path, reads="barrier").reads == "barrier"
    assert _cfg(tmp_path, reads="lease").reads == "lease"
    assert cfg.slow_fsync_ms == 1000.0 and cfg.ready_lag_slots_max == 1000
    cfg = _cfg(tmp_path, metrics_port="9101", log_format="json", slow_fsync_ms="2.5",
               ready_lag_slots_max="5")  # fmt: skip
    assert (cfg.metrics_port, cfg.log_format, cfg.slow_fsync_ms, cfg.ready_lag_slots_max) == (
        9101,
        "json",
        2.5,
        5,
    )
    cases: list[tuple[dict[str, object], str]] = [
        ({"metrics_port": "x"}, "--metrics-port: port 'x' is not a number"),
        ({"metrics_port": "8001"}, "--metrics-port 8001 is this node's peer or client port"),
        ({"metrics_port": "7001"}, "--metrics-port 7001 is this node's peer or client port"),
        ({"log_format": "xml"}, "--log-format 'xml': expected one of text, json"),
        ({"reads": "quorum"}, "--reads 'quorum': expected one of read-index, barrier, lease"),
        ({"slow_fsync_ms": "soon"}, "--slow-fsync-ms 'soon' is not a number"),
        ({"slow_fsync_ms": -1}, "--slow-fsync-ms -1.0 must be >= 0 milliseconds"),
        ({"ready_lag_slots_max": "0"}, "--ready-lag-slots-max must be at least 1"),
    ]
    for flags, says in cases:
        with pytest.raises(ConfigError) as e:
            _cfg(tmp_path, **flags)
        assert says in str(e.value), (flags, str(e.value))


def _up(leader: str) -> dict[str, str]:
    return {"role": "follower", "leader_id": leader}


def test_status_has_a_quorum_only_when_a_majority_names_one_leader() -> None:
    down = "unreachable (refused)"
    ok, line = quorum_line([_up("2"), _up("2"), down])
    assert ok and line == "quorum: yes: 2 of 3 nodes follow leader 2 (a majority is 2)"
    ok, line = quorum_line([_up("2"), down, down])
    assert not ok and line.startswith("quorum: NO: at most 1 of 3 nodes name the same leader")
    ok, line = quorum_line([_up("1"), _up("2"), _up("")])
    assert not ok
    ok, line = quorum_line([_up(""), _up(""), down])
    assert not ok and line == (
        "quorum: NO: 2 of 3 nodes answered, and none knows a leader; a majority is 2"
    )
    assert quorum_line([_up("1")])[0]  # one node is its own majority
