"""The supervision runtime: actors, supervisors, topics and their policy.

The public names are re-exported here; everything else is private to the package.
"""

from dployr.supervision.actor import Actor, ActorRef, Query
from dployr.supervision.context import ChildContext
from dployr.supervision.events import (
    ChildRestarting,
    ChildStarted,
    ChildTerminated,
    EventSink,
    MaxIntensityReached,
    Offender,
    ShutdownFailed,
    StartFailed,
    SupervisionEvent,
)
from dployr.supervision.policy import (
    DEFAULT_BACKOFF,
    DEFAULT_INTENSITY,
    DISABLED_BACKOFF,
    Backoff,
    ChildKind,
    Intensity,
    Restart,
    Strategy,
)
from dployr.supervision.reasons import NORMAL, SHUTDOWN, Crashed, ExitReason, Normal, Shutdown
from dployr.supervision.spec import BRUTAL_KILL, INFINITY, ChildSpec, StartFunction
from dployr.supervision.supervisor import ChildStatistics, Supervisor, SupervisorStatistics
from dployr.supervision.topic import Gap, Subscription, Topic, TopicStatistics

__all__ = [
    "BRUTAL_KILL",
    "DEFAULT_BACKOFF",
    "DEFAULT_INTENSITY",
    "DISABLED_BACKOFF",
    "INFINITY",
    "NORMAL",
    "SHUTDOWN",
    "Actor",
    "ActorRef",
    "Backoff",
    "ChildContext",
    "ChildKind",
    "ChildRestarting",
    "ChildSpec",
    "ChildStarted",
    "ChildStatistics",
    "ChildTerminated",
    "Crashed",
    "EventSink",
    "ExitReason",
    "Gap",
    "Intensity",
    "MaxIntensityReached",
    "Normal",
    "Offender",
    "Query",
    "Restart",
    "Shutdown",
    "ShutdownFailed",
    "StartFailed",
    "StartFunction",
    "Strategy",
    "Subscription",
    "SupervisionEvent",
    "Supervisor",
    "SupervisorStatistics",
    "Topic",
    "TopicStatistics",
]
