"""The control plane's cluster state: the instances (machines running ``dployr agent``),
their join tokens and credentials, which instance each service belongs to, and the
last-known services of each instance.

Open it with :func:`open_cluster_state`; use it through :class:`ClusterState`. The PostgreSQL
backend (:mod:`dployr.store.cluster.postgres`, which loads psycopg) is imported only when a
database URL is given. Secrets
(join tokens, agent credentials) are shown once and stored only as SHA-256 digests.
"""

from dployr.store.cluster.base import CHANGES, CONTROL_PLANES, INSTANCES, PLACEMENT, SNAPSHOTS
from dployr.store.cluster.errors import (
    InstanceExists,
    InvalidClusterValue,
    InvalidInstanceName,
    InvalidJoinToken,
    LeadershipLost,
    UnknownInstance,
)
from dployr.store.cluster.leader import while_leader
from dployr.store.cluster.notices import Changes
from dployr.store.cluster.records import ControlPlaneRecord, InstanceRecord, JoinToken
from dployr.store.cluster.sqlite import CLUSTER_DB_FILE_NAME, SqliteClusterState
from dployr.store.cluster.state import ClusterState, open_cluster_state
from dployr.store.cluster.tables import (
    CREDENTIAL_PREFIX,
    JOIN_TOKEN_PREFIX,
    LOCAL,
    check_instance_name,
)

__all__ = [
    "CHANGES",
    "CLUSTER_DB_FILE_NAME",
    "CONTROL_PLANES",
    "CREDENTIAL_PREFIX",
    "INSTANCES",
    "JOIN_TOKEN_PREFIX",
    "LOCAL",
    "PLACEMENT",
    "SNAPSHOTS",
    "Changes",
    "ClusterState",
    "ControlPlaneRecord",
    "InstanceExists",
    "InstanceRecord",
    "InvalidClusterValue",
    "InvalidInstanceName",
    "InvalidJoinToken",
    "JoinToken",
    "LeadershipLost",
    "SqliteClusterState",
    "UnknownInstance",
    "check_instance_name",
    "open_cluster_state",
    "while_leader",
]
