"""What ``taskiq worker tests.remote.worker_app:broker`` imports: the engine and the jobs.

The Redis URL and the queue name come from the environment the test suite starts it with.
"""

from __future__ import annotations

import os

from backburner.taskiq import redis_engine
from tests.remote import jobs as jobs

engine = redis_engine(
    os.environ["BACKBURNER_TEST_REDIS_URL"],
    queue_name=os.environ.get("BACKBURNER_TEST_QUEUE", "backburner"),
    redeliver_after=float(os.environ.get("BACKBURNER_TEST_REDELIVER", "600")),
)
broker = engine.broker
scheduler = engine.scheduler
