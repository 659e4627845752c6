"""The engine's one seam to the operating system: processes, signals, cgroups, users, ports.

Only this package starts a process (``subprocess``) or sends a signal (``os.kill``,
``os.killpg``); the rest of the engine asks it to:

- :mod:`~dployr.engine.os.launcher`: the one process runner (every spawn, a run to
  completion with a ``deliver_cancel`` hook) and the one kill ladder (SIGTERM, the grace,
  SIGKILL of the group and the cgroup).
- :mod:`~dployr.engine.os.commands`: how the shell would run a command (pure rules).
- :mod:`~dployr.engine.os.warden`: the process that kills the runs if the daemon dies.
- :mod:`~dployr.engine.os.leftovers`: what a killed daemon left, killed and removed at start.
- :mod:`~dployr.engine.os.cgroups`: a cgroup per run, killed whole.
- :mod:`~dployr.engine.os.users`: a user of its own per service when the daemon is root.
- :mod:`~dployr.engine.os.ports`: private ports, and whether a release waits on its socket.
"""
