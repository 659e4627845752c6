"""The instance protocol: what an instance is asked, answers and tells, as plain values.

Pure (no trio, quart, sqlite3 or psutil): the gateway, the CLI and later a remote instance
stand on it alone, and the engine implements it.

* :mod:`~dployr.protocol.messages`: the requests and their replies;
* :mod:`~dployr.protocol.events`: the changes an instance publishes, supervision reports;
* :mod:`~dployr.protocol.feed`: the other feed messages (log lines, gaps);
* :mod:`~dployr.protocol.errors`: the one :class:`Error` shape, with its five codes;
* :mod:`~dployr.protocol.codec`: every message as JSON and back;
* :mod:`~dployr.protocol.handle`: :class:`InstanceHandle`, what an instance offers.
"""

from dployr.protocol.codec import PROTOCOL_VERSION
from dployr.protocol.errors import ERROR_CODES, Error, ErrorCode
from dployr.protocol.events import (
    Change,
    DeploymentChanged,
    DiskChanged,
    HealthChanged,
    StatusChanged,
    SupervisionReport,
)
from dployr.protocol.feed import Gap, LogLines
from dployr.protocol.handle import Feed, InstanceHandle
from dployr.protocol.messages import Request, reply_type

__all__ = [
    "ERROR_CODES",
    "PROTOCOL_VERSION",
    "Change",
    "DeploymentChanged",
    "DiskChanged",
    "Error",
    "ErrorCode",
    "Feed",
    "Gap",
    "HealthChanged",
    "InstanceHandle",
    "LogLines",
    "Request",
    "StatusChanged",
    "SupervisionReport",
    "reply_type",
]
