"""``paxostob.__all__`` is the public surface: exactly what the hub offers, and typed.

The README and docs teach ``from paxostob import ...``; every name there must
import, name the defining module's object, and be seen by a type checker as
that object (a name served by a module ``__getattr__`` alone is ``object`` to
mypy and IDEs).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
from pathlib import Path

import paxostob

#: What the README and docs/*.md teach users to import from the package.
TAUGHT = frozenset(
    {
        "Consensus",
        "Delivery",
        "KeyValueStore",
        "LogConfig",
        "LogStorage",
        "MemoryNetwork",
        "MemoryStorage",
        "Membership",
        "SqliteStorage",
        "StateMachine",
        "Status",
        "Storage",
        "TcpTransport",
        "TotalOrderBroadcast",
        "default_storage",
    }
)


def test_all_names_only_what_imports() -> None:
    assert len(set(paxostob.__all__)) == len(paxostob.__all__), "a name listed twice"
    missing = [name for name in paxostob.__all__ if not hasattr(paxostob, name)]
    assert not missing, f"in __all__ but not importable: {missing}"
    star: dict[str, object] = {}
    exec("from paxostob import *", star)
    assert set(star) - {"__builtins__"} == set(paxostob.__all__)


def test_all_names_every_public_object_the_hub_offers() -> None:
    offered = {
        name
        for name, value in vars(paxostob).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", "").startswith("paxostob.")
    }
    assert offered - set(paxostob.__all__) == set(), "offered but not in __all__"


def test_all_has_what_the_docs_teach_and_every_error() -> None:
    errors = {
        name
        for name, value in vars(paxostob.errors).items()
        if inspect.isclass(value) and issubclass(value, paxostob.PaxosError)
    }
    assert TAUGHT | errors <= set(paxostob.__all__), (TAUGHT | errors) - set(paxostob.__all__)


def test_each_name_is_its_defining_modules_object() -> None:
    for name in paxostob.__all__:
        value = getattr(paxostob, name)
        module = getattr(value, "__module__", None)
        if module is None or name == "__version__":
            continue
        defining = sys.modules[module]
        assert getattr(defining, name) is value, f"paxostob.{name} is not {module}.{name}"


SNIPPET = """\
import paxostob
from paxostob import KeyValueStore, LogStorage, TcpTransport

reveal_type(paxostob.TcpTransport)
reveal_type(TcpTransport)
reveal_type(LogStorage)
reveal_type(paxostob.KeyValueStore)
reveal_type(KeyValueStore)
reveal_type(paxostob.SqliteStorage)
"""


def test_mypy_sees_the_real_classes(tmp_path: Path) -> None:
    """``reveal_type`` of each name is its class (``builtins.object`` for a ``__getattr__`` one)."""
    snippet = tmp_path / "uses_paxostob.py"
    snippet.write_text(SNIPPET, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(snippet)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    revealed = [line for line in result.stdout.splitlines() if "Revealed type" in line]
    assert len(revealed) == SNIPPET.count("reveal_type"), result.stdout + result.stderr
    for line, defining in zip(
        revealed,
        [
            "paxostob.transport.tcp.TcpTransport",
            "paxostob.transport.tcp.TcpTransport",
            "paxostob.storage.log.LogStorage",
            "paxostob.apps.kv.KeyValueStore",
            "paxostob.apps.kv.KeyValueStore",
            "paxostob.storage.sqlite.SqliteStorage",
        ],
        strict=True,
    ):
        assert defining in line, line
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not errors, errors
