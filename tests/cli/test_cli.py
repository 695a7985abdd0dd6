"""The command line: configuration from flags and TOML, and one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from paxostob.cli import main
from paxostob.cli.config import ConfigError, load_node_config, parse_members

from ..integration.cluster import free_ports

MEMBERS = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=[::1]:7003"


def test_members_parse_into_ids_hosts_and_ports() -> None:
    assert parse_members(MEMBERS) == {
        "1": ("127.0.0.1", 7001),
        "2": ("127.0.0.1", 7002),
        "3": ("::1", 7003),
    }


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1=127.0.0.1", "expected ID=HOST:PORT"),
        ("1=h:70000", "out of range"),
        ("1=h:x", "not a number"),
        ("1=h:1,1=h:2", "appears twice"),
        ("", "empty"),
    ],
)
def test_bad_members_are_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_members(text)


def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text("0123456789abcdef0123456789abcdef\n")
    return path


def test_a_toml_file_configures_a_node_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        f'id = "2"\nmembers = "{MEMBERS}"\ndata_dir = "{tmp_path / "d"}"\n'
        f'secret_file = "{secret(tmp_path)}"\nresp_port = 9000\ncluster_id = "prod"\n'
    )
    cfg = load_node_config({"resp_port": 9100}, config)
    assert (cfg.node_id, cfg.cluster_id, cfg.resp_port) == ("2", "prod", 9100)
    assert cfg.members["3"] == ("::1", 7003)
    assert cfg.secret == b"0123456789abcdef0123456789abcdef"
    # Without --resp-port, clients are served on the peer port + 1000.
    config.write_text(config.read_text().replace("resp_port = 9000\n", ""))
    assert load_node_config({}, config).resp_port == 8002


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({}, "--id is required"),
        ({"id": "9", "members": MEMBERS}, "not one of the members"),
        ({"id": "1", "members": MEMBERS}, "--data-dir is required"),
        ({"id": "1", "members": MEMBERS, "data_dir": "d"}, "--secret-file is required"),
        (
            {"id": "1", "members": MEMBERS, "data_dir": "d", "secret_file": "/nonexistent"},
            "cannot read secret file",
        ),
    ],
)
def test_incomplete_configuration_is_refused(flags: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_node_config(flags, None)


def test_unknown_toml_keys_and_bad_toml_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('id = "1"\nmemebrs = "x"\n')
    with pytest.raises(ConfigError, match="unknown key"):
        load_node_config({}, config)
    config.write_text("id = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_node_config({}, config)


def test_tls_needs_all_three_files(tmp_path: Path) -> None:
    flags = {
        "id": "1",
        "members": MEMBERS,
        "data_dir": "d",
        "secret_file": str(secret(tmp_path)),
        "tls_cert": str(secret(tmp_path)),
    }
    with pytest.raises(ConfigError, match="TLS needs all of"):
        load_node_config(flags, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--id", "9", "--members", MEMBERS],
        ["serve", "--id", "1", "--members", "1=h:x"],
        ["serve", "--bogus"],
        ["cluster", "--nodes", "0"],
        ["status"],
        ["nonsense"],
    ],
)
def test_bad_flags_exit_2_with_one_line_and_no_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


def test_status_reports_unreachable_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    ports = free_ports(2)
    members = f"1=127.0.0.1:{ports[0]},2=127.0.0.1:{ports[1]}"
    resp = f"1=127.0.0.1:{ports[0]},2=127.0.0.1:{ports[1]}"
    assert main(["status", "--members", members, "--resp-members", resp, "--timeout", "1"]) == 1
    *nodes, quorum = capsys.readouterr().out.splitlines()
    assert len(nodes) == 2 and all("unreachable" in line for line in nodes)
    assert quorum.startswith("quorum: NO: 0 of 2 nodes answered"), quorum


def test_toml_keys_may_be_spelled_with_dashes_like_the_flags(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        f'id = "2"\nmembers = "{MEMBERS}"\ndata-dir = "{tmp_path / "d"}"\n'
        f'secret-file = "{secret(tmp_path)}"\nresp-port = 9000\nproto-max-bulk-len = 4096\n'
    )
    cfg = load_node_config({}, config)
    assert (cfg.data_dir, cfg.resp_port, cfg.proto_max_bulk_len) == (tmp_path / "d", 9000, 4096)
    config.write_text(config.read_text() + "resp_port = 9001\n")
    with pytest.raises(ConfigError, match="resp_port is given twice"):
        load_node_config({}, config)
