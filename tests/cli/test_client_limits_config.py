"""``paxostob serve``'s client limits: flags, TOML keys, what is derived, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from paxostob.cli import main
from paxostob.cli.app import build_parser
from paxostob.cli.config import (
    CLIENT_QUERY_BUFFER_LIMIT_DEFAULT,
    ConfigError,
    NodeConfig,
    load_node_config,
)
from paxostob.cli.descriptors import descriptors_reserved, plan_maxclients
from paxostob.cli.serve import _flags, client_limits
from paxostob.core.multipaxos import LogConfig
from paxostob.resp.server import TIMEOUT_S_DEFAULT

MEMBERS = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"


def base_flags(tmp_path: Path) -> list[str]:
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    return [
        *("serve", "--id", "1", "--members", MEMBERS),
        *("--data-dir", str(tmp_path / "d"), "--secret-file", str(secret)),
    ]


def config_of(argv: list[str], config_file: Path | None = None) -> NodeConfig:
    ns = build_parser().parse_args(argv)
    return load_node_config(_flags(ns), config_file)


def test_limit_flags_reach_the_configuration(tmp_path: Path) -> None:
    cfg = config_of(
        [
            *base_flags(tmp_path),
            *("--maxclients", "50", "--timeout", "2.5", "--proto-max-bulk-len", "4096"),
            *("--client-query-buffer-limit", "65536"),
        ]
    )
    assert (cfg.maxclients, cfg.timeout_s) == (50, 2.5)
    assert (cfg.proto_max_bulk_len, cfg.client_query_buffer_limit) == (4096, 65536)
    default = config_of(base_flags(tmp_path))
    assert (default.maxclients, default.timeout_s, default.proto_max_bulk_len) == (
        None,
        TIMEOUT_S_DEFAULT,
        None,
    )
    assert default.client_query_buffer_limit == CLIENT_QUERY_BUFFER_LIMIT_DEFAULT


def test_limit_keys_in_toml_and_flags_override_them(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        "maxclients = 7\ntimeout = 0\nproto_max_bulk_len = 1000\nclient_query_buffer_limit = 2000\n"
    )
    cfg = config_of(base_flags(tmp_path), config)
    assert (cfg.maxclients, cfg.timeout_s, cfg.proto_max_bulk_len) == (7, 0.0, 1000)
    assert cfg.client_query_buffer_limit == 2000
    cfg = config_of([*base_flags(tmp_path), "--maxclients", "9"], config)
    assert cfg.maxclients == 9


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--maxclients", "0"], "--maxclients must be at least 1"),
        (["--maxclients", "many"], "not a whole number"),
        (["--timeout", "-1"], "must be >= 0 seconds"),
        (["--timeout", "nan"], "must be >= 0 seconds"),
        (["--timeout", "soon"], "not a number of seconds"),
        (["--proto-max-bulk-len", "0"], "at least 1"),
        (["--client-query-buffer-limit", "1.5"], "not a whole number"),
    ],
)
def test_bad_limit_flags_exit_2_with_one_line(
    tmp_path: Path, flags: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*base_flags(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err


def test_the_bulk_bound_defaults_to_the_largest_log_entry_and_cannot_exceed_it(
    tmp_path: Path,
) -> None:
    entry = LogConfig().batch_bytes_max
    limits = client_limits(config_of([*base_flags(tmp_path), "--maxclients", "5"]), LogConfig())
    assert limits.bulk_bytes_max == entry
    assert (limits.maxclients, limits.timeout_s) == (5, TIMEOUT_S_DEFAULT)
    with pytest.raises(ConfigError, match="exceeds the largest log entry"):
        client_limits(
            config_of([*base_flags(tmp_path), "--proto-max-bulk-len", str(entry + 1)]),
            LogConfig(),
        )
    with pytest.raises(ConfigError, match="below --proto-max-bulk-len"):
        client_limits(
            config_of([*base_flags(tmp_path), "--client-query-buffer-limit", str(entry - 1)]),
            LogConfig(),
        )


def test_the_reserve_grows_with_the_peers() -> None:
    assert descriptors_reserved(0) == 64
    assert descriptors_reserved(2) == 72


@pytest.mark.parametrize(
    ("wanted", "soft", "hard", "maxclients", "soft_limit"),
    [
        (10_000, 1024, 1_048_576, 10_000, 10_072),  # raised as far as needed, no further
        (10_000, 1024, 4096, 4096 - 72, 4096),  # raised to the hard limit, clients lowered
        (10_000, 1024, None, 10_000, 10_072),  # no hard limit
        (10_000, 1024, 1024, 1024 - 72, 1024),  # nothing to raise
        (100, 20_000, 20_000, 100, 20_000),  # already enough: left alone
        (10_000, 50, 50, 50 - 72, 50),  # not one client: the caller refuses to start
    ],
)
def test_maxclients_and_the_soft_limit_as_redis_derives_them(
    wanted: int, soft: int, hard: int | None, maxclients: int, soft_limit: int
) -> None:
    plan = plan_maxclients(wanted, descriptors_reserved(2), soft, hard)
    assert (plan.maxclients, plan.soft_limit) == (maxclients, soft_limit)


def test_serve_help_documents_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag in ("--maxclients", "--timeout", "--proto-max-bulk-len", "--client-query-buffer"):
        assert flag in out
    assert "max number of clients reached" in out
