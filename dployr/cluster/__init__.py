"""The cluster: the control plane's view of its instances (issue 14).

* :mod:`~dployr.cluster.router`: :class:`ClusterHandle`, the local instance and the
  connected agents as one :class:`~dployr.protocol.handle.InstanceHandle`, routing each
  request by placement;
* :mod:`~dployr.cluster.placement`: where a deploy naming no instance goes (a pure rule);
* :mod:`~dployr.cluster.remote`: :class:`RemoteHandle`, an agent's instance as an
  InstanceHandle over its channel;
* :mod:`~dployr.cluster.hub`: :class:`AgentHub`, the connected agents.

It stands on the protocol, the cluster's state (``dployr.store.cluster``), supervision and
trio; never on the engine: an instance is reached only through its handle.
"""

from dployr.cluster.router import ClusterHandle, Members, NoMembers

__all__ = ["ClusterHandle", "Members", "NoMembers"]
