"""The daemon: ``dployr up`` runs the root supervisor (instance, gateway) in the foreground."""
