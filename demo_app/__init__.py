"""The backburner demo: the seed articles' examples, sign-up and FibTastic, made real.

Run it with ``python -m demo_app`` (or ``make demo``) and open http://127.0.0.1:8000.
"""

from .app import Demo as Demo
from .app import create_app as create_app

__all__ = ["Demo", "create_app"]
