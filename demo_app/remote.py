"""The demo's jobs on Redis: ``BACKBURNER_ENGINE=redis`` sends them to a ``taskiq worker``.

Jobs that travel are registered by name and take JSON arguments, so these take the mail
catcher's host, port and delay rather than a ``MailSettings``, and build the message where
they run. The web app and the worker both import this module::

    BACKBURNER_ENGINE=redis REDIS_URL=redis://127.0.0.1:6379/0 make demo
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/taskiq worker demo_app.remote:broker

Needs ``pip install 'backburner[taskiq]'`` (in the dev extra).
"""

from __future__ import annotations

import os

from backburner import job
from backburner.taskiq import redis_engine

from .jobs import MailSettings, fibtastic_message, send_mail, send_welcome

__all__ = ["REDIS_URL", "broker", "engine", "fibtastic_remote", "send_welcome_remote"]

#: Where Redis is: ``REDIS_URL``, by default a local Redis's first database.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

engine = redis_engine(REDIS_URL, queue_name="backburner-demo")
broker = engine.broker  # taskiq worker demo_app.remote:broker


@job(name="demo.send_welcome", queue="mail")
async def send_welcome_remote(host: str, port: int, delay: float, address: str) -> None:
    """``send_welcome``, from plain arguments."""
    await send_welcome(MailSettings(host, port, delay), address)


@job(name="demo.fibtastic")
async def fibtastic_remote(host: str, port: int, delay: float, address: str, count: int) -> None:
    """Compute ``count`` Fibonacci numbers and send them (on the worker, in one job)."""
    await send_mail(MailSettings(host, port, delay), fibtastic_message(address, count))
