"""The Celery application of the Celery test: a worker process imports it by module path.

Its broker and result backend URLs come from the environment, so the test
decides which nodes the worker and the client use.
"""

from __future__ import annotations

import os

from celery import Celery  # type: ignore[import-untyped]

BROKER_ENV = "PAXOSTOB_CELERY_BROKER"
BACKEND_ENV = "PAXOSTOB_CELERY_BACKEND"
#: Seconds a delivered but unacknowledged message waits before Kombu puts it back
#: in its queue (Kombu's default is an hour): a message the worker held when
#: it lost its connection runs again within the test's timeout.
VISIBILITY_TIMEOUT_S = 5

app = Celery(
    "paxostob_celery_test",
    broker=os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"),
    backend=os.environ.get(BACKEND_ENV, "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    result_expires=3600,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


@app.task(name="paxostob.square")  # type: ignore[untyped-decorator]
def square(x: int) -> int:
    return x * x
