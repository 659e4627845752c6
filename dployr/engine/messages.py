"""The instance's requests and replies now live in :mod:`dployr.protocol.messages`.

Re-exported here for the engine modules and tests that still import them from here.
"""

from dployr.protocol.messages import *  # noqa: F403
