"""The cluster: the control plane's view of its instances (issue 14).

* :mod:`~dployr.cluster.remote`: :class:`RemoteHandle`, an agent's instance as an
  InstanceHandle over its channel;
* :mod:`~dployr.cluster.hub`: :class:`AgentHub`, the connected agents.
"""
