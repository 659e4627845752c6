"""dployr: deploy and supervise services on your own Linux machines."""

__version__ = "0.1.0"
