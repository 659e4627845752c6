"""The service engine: the per-instance supervisor and the actor tree of each service."""
