"""The OS seam: only ``dployr/engine/os/`` starts processes or sends signals, and the
remote rules of a source stand alone (no event loop, no process).

Read from the source itself (its syntax tree), so a process started or a signal sent
anywhere else in the package fails here, however it is spelled.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dployr

PACKAGE = Path(dployr.__file__).parent
SEAM = PACKAGE / "engine" / "os"
SIGNALLING = {"kill", "killpg", "pidfd_send_signal", "send_signal", "terminate"}
"""Calls that send a signal: ``os.kill(pid, sig)``, ``os.killpg``,
``signal.pidfd_send_signal``, psutil's and Popen's ``send_signal(sig)`` and
``terminate()`` (a ``kill()`` without arguments, a cgroup's, is the seam's own)."""


def _imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
    return found


def _signals(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SIGNALLING
            and (node.func.attr == "terminate") == (not node.args)
        ):
            found.append(f"{ast.unparse(node.func)}() at line {node.lineno}")
    return found


def _outside_the_seam() -> list[Path]:
    return [path for path in PACKAGE.rglob("*.py") if not path.is_relative_to(SEAM)]


def test_only_the_os_seam_starts_processes() -> None:
    starting = {"subprocess", "multiprocessing", "pty"}
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_imports(ast.parse(path.read_text())) & starting)
        for path in _outside_the_seam()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_only_the_os_seam_sends_signals() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): _signals(ast.parse(path.read_text()))
        for path in _outside_the_seam()
    }
    assert {path: calls for path, calls in offenders.items() if calls} == {}


def test_the_seam_does_send_them() -> None:
    """The check above sees signals where they are sent (it is not blind)."""
    sent = {path.name: _signals(ast.parse(path.read_text())) for path in SEAM.rglob("*.py")}
    assert sent["launcher.py"]
    assert sent["cgroups.py"]
    assert sent["leftovers.py"]


def test_the_remote_rules_need_no_event_loop_or_process() -> None:
    tree = ast.parse((PACKAGE / "engine" / "sources" / "remotes.py").read_text())
    imported = _imports(tree)
    heavy = {"trio", "subprocess", "psutil", "sqlite3", "quart"}
    assert not {name.split(".")[0] for name in imported} & heavy
    assert not [name for name in imported if name.startswith("dployr.engine")]
