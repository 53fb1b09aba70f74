"""The dashboard: see and steer queues, workers and failures from the browser.

::

    from backburner.dashboard import dashboard

    app.mount("/backburner", dashboard(auth=("admin", os.environ["DASHBOARD_PASSWORD"])))

Needs the ``dashboard`` extra (``pip install 'backburner[dashboard]'``, which brings Jinja2).
Secure by default: without ``auth`` it refuses every request.
"""

from ._app import Dashboard as Dashboard
from ._app import dashboard as dashboard
from ._auth import BasicAuth as BasicAuth

__all__ = ["BasicAuth", "Dashboard", "dashboard"]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
