"""One service on an instance: its supervision tree, its log book, its status and health.

The package is split by job, each module one layer of :class:`Service` building on the one
below it:

=================  ====================================================================
``port``           what a service needs of its instance (a Protocol, not ``Instance``)
``core``           its state (record, status, health, releases) and the shared rules
``events``         supervision events of its tree -> status events and log lines
``tree``           its supervision tree: release supervisors, proxy, listening socket
``readiness``      waiting for a new release to be ready, raced against its crash
``rollout``        the roll-out as a pure state machine (no trio)
``rolling``        the roll-out's steps carried out (the thin trio layer), deploy milestones
``reads``          info, settings and environment as read
``commands``       deploy, rollback, start, stop, restart, settings, env, delete
=================  ====================================================================

The :class:`Service` object is not an actor with a mailbox: commands on one service are
serialised by a lock, and reads (status, logs, settings) never wait behind a 10-second stop.
Every task it causes lives in its supervision tree.
"""

from dployr.engine.service.commands import Service
from dployr.engine.service.core import LiveRelease
from dployr.engine.service.port import InstancePort
from dployr.engine.service.reads import APPLIES_LATER, APPLIES_NOW

__all__ = ["APPLIES_LATER", "APPLIES_NOW", "InstancePort", "LiveRelease", "Service"]
