"""Remote engines: queues whose jobs run in other processes (a taskiq broker's workers).

A queue with an engine is a ``RemoteQueue``: it implements the executor's ``Queue`` port, so
the executor needs no case for it. The engine itself is reached through the ``Engine`` port;
``backburner.taskiq`` is the one shipped.
"""

from ._remote import RemoteHooks as RemoteHooks
from ._remote import RemoteQueue as RemoteQueue
from ._remote import check_overlap as check_overlap
from ._remote import close_engines as close_engines
from ._remote import open_engines as open_engines

__all__ = ["RemoteHooks", "RemoteQueue", "check_overlap", "close_engines", "open_engines"]
