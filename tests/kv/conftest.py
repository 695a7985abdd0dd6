from __future__ import annotations

from collections.abc import Iterator

import pytest

from paxostob.kv.replies import OK

from ..tools import missing_tool
from .real_redis import RespClient, running_redis


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RespClient | str]:
    with running_redis(tmp_path_factory.mktemp("redis")) as client:
        yield client


@pytest.fixture
def redis(redis_session: RespClient | str) -> RespClient:
    """A real redis-server with an empty database (none: ``missing_tool`` fails in CI)."""
    if isinstance(redis_session, str):
        missing_tool(redis_session)
    assert redis_session.call(b"FLUSHALL") == OK
    return redis_session
