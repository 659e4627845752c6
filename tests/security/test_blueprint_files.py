"""Hostile blueprint files get a one-line error, at once, and nothing is deployed.

A blueprint is read by the CLI on the operator's machine: a path that is a device, a pipe,
a huge file or a YAML alias bomb must not hang it, fill its memory or print a traceback.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.cli.conftest import Daemon, run_all

pytestmark = pytest.mark.slow


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A running daemon, to show that nothing reached it."""
    up = await Daemon.start(tmp_path / "data")
    try:
        yield up
    finally:
        with trio.CancelScope(shield=True):
            code, _ = await up.stop()
    assert code == 0


ALIAS_BOMB = """\
name: bomb
remote: .
run_cmd: "true"
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _hostile(folder: Path) -> list[tuple[Path, str]]:
    """Each hostile blueprint, and the words its one-line error must hold."""
    zero = folder / "zero.yaml"
    zero.symlink_to("/dev/zero")
    fifo = folder / "fifo.toml"
    os.mkfifo(fifo)  # nobody ever writes to it: reading it would wait forever
    device = folder / "device.json"
    device.symlink_to("/dev/urandom")
    huge = folder / "huge.toml"
    huge.write_text('name = "x"\n' + "# padding\n" * 200_000)
    bomb = folder / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    loop = folder / "loop.yaml"
    loop.write_text("name: loop\nremote: .\nrun_cmd: 'true'\nx: &x [1, *x]\n")
    deep_yaml = folder / "deep.yaml"
    deep_yaml.write_text("x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    deep_json = folder / "deep.json"
    deep_json.write_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    deep_toml = folder / "deep.toml"
    deep_toml.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    return [
        (zero, "not a regular file"),
        (fifo, "not a regular file"),
        (device, "not a regular file"),
        (huge, "larger than 1 MiB"),
        (bomb, "aliases are expanded"),
        (loop, "refers to itself"),
        (deep_yaml, "nested more than 64 levels"),
        (deep_json, "nested too deeply"),
        (deep_toml, "nested too deeply"),
    ]


async def test_a_hostile_blueprint_gets_one_line(daemon: Daemon, tmp_path: Path) -> None:
    cases = _hostile(tmp_path)
    with trio.fail_after(60):  # the device and the pipe would never end
        results = await run_all(daemon, [["deploy", "--blueprint", str(p)] for p, _ in cases])
    for (path, words), result in zip(cases, results, strict=True):
        line = result.one_line_error()
        assert words in line, (path.name, line)
        assert str(path) in line, (path.name, line)
        assert result.out == ""
    assert await daemon.services() == {}


async def test_a_yaml_blueprint_may_still_use_an_alias(daemon: Daemon, tmp_path: Path) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "worker.py").write_text("import signal\nprint('up', flush=True)\nsignal.pause()\n")
    blueprint = folder / "dployr.yaml"
    blueprint.write_text(
        "name: aliased\nremote: .\nrun_cmd: &run python3 worker.py\ndescription: *run\n"
        "restart:\n  min_uptime: 0.3\n"
    )
    await daemon.ok("deploy", "--blueprint", str(blueprint))
    service = (await daemon.services())["aliased"]
    assert (service["status"], service["description"]) == ("running", "python3 worker.py")
