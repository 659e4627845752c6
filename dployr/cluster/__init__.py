"""The cluster: the control plane's view of every instance (issue 14).

* :mod:`~dployr.cluster.router`: :class:`ClusterHandle`, the local instance and the
  connected agents as one :class:`~dployr.protocol.handle.InstanceHandle`, routing each
  request by placement.

It stands on the protocol, the cluster's state (``dployr.store.cluster``), supervision and
trio; never on the engine: an instance is reached only through its handle.
"""

from dployr.cluster.router import ClusterHandle, Members, NoMembers

__all__ = ["ClusterHandle", "Members", "NoMembers"]
