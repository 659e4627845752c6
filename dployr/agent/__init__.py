"""The agent: ``dployr agent`` runs an instance on a machine and dials the control plane.

* :mod:`~dployr.agent.credential`: the join (a join token exchanged for a credential, kept
  0600 in ``agent.json``);
* :mod:`~dployr.agent.outbox`: the Results kept until the control plane acks them, so a
  Call runs once;
* :mod:`~dployr.agent.uplink`: the channel to the control plane, its reconnects, the Calls,
  subscriptions and Update snapshots it carries (docs/agent-protocol.md);
* :mod:`~dployr.agent.run`: the agent's process, the same instance ``dployr up`` runs.
"""
