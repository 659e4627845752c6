"""Registry credentials: kept sealed like a git password, never in logs, ps or the API."""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.cli.conftest import Daemon, free_port, http_get
from tests.images.conftest import REGISTRY, Registry, _listening, podman_cmd

# podman's store is the machine's: each test keeps to images and names of its own (see
# tests/images/conftest.py), so these run beside the rest of the suite.
pytestmark = pytest.mark.slow

TOKEN = "t0ken-Zq81"


def bcrypt_line(user: str, password: str) -> str:
    """An htpasswd line (docker-registry reads bcrypt only), with glibc's crypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # noqa: PLC0415 (deprecated: imported only here)

        return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n"


@pytest.fixture
def locked(tmp_path: Path, registry: Registry) -> Iterator[str]:
    """A registry on loopback that wants alice's token, holding v1 as ``…/web:v1``."""
    (tmp_path / "htpasswd").write_text(bcrypt_line("alice", TOKEN))
    config = tmp_path / "locked.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        "http:\n  addr: 127.0.0.1:0\n"
        f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp_path / 'htpasswd'}\n"
        "log:\n  level: info\n"
    )
    process = subprocess.Popen(
        [str(REGISTRY), "serve", str(config)], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        host = _listening(process, tmp_path / "locked.log")
        pinned = f"{registry.repo}@{registry.digests['v1']}"
        podman_cmd("pull", "--quiet", "--tls-verify=false", pinned)
        podman_cmd("push", "--quiet", "--tls-verify=false", "--creds", f"alice:{TOKEN}",
                   pinned, f"{host}/team/web:v1")  # fmt: skip
        yield host
    finally:
        process.terminate()
        process.wait(timeout=60)


async def test_a_registry_token_is_used_for_the_pull_and_shown_nowhere(
    daemon: Daemon, locked: str
) -> None:
    port = free_port()
    image = f"{locked}/team/web:v1"
    refused = await daemon.cli("deploy", "--name", "web", "--image", image,
                               "--port", str(port), "--min-uptime", "0.3")  # fmt: skip
    assert "unauthorized" in refused.one_line_error(), refused
    # With the token: the pull is allowed (in a loop, to catch podman's command line).
    seen_in_ps: list[bytes] = []

    async def watch_ps(done: trio.Event) -> None:
        while not done.is_set():
            listing = await trio.run_process(["ps", "-eo", "args"], capture_stdout=True)
            seen_in_ps.append(listing.stdout)

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_ps, done)
        out = await daemon.ok("deploy", "--name", "web", "--image", image,
                              "--registry", f"https://alice:{TOKEN}@{locked}",
                              "--port", str(port), "--min-uptime", "0.3")  # fmt: skip
        done.set()
    assert await http_get(port, "/version") == "v1\n"
    assert seen_in_ps
    assert not any(TOKEN.encode() in listing for listing in seen_in_ps)
    assert TOKEN not in out
    assert TOKEN not in await daemon.ok("logs", "web")
    settings = await daemon.ok("settings", "web", "--json")
    assert f"https://alice:***@{locked}" in settings, settings
    assert TOKEN not in settings
    async with daemon.http() as http:
        for path in ("/services/web", "/services/web/deployments", "/services/web/settings"):
            assert TOKEN not in (await http.get(path)).text
    # A redeploy with the stored settings uses the kept token.
    await daemon.ok("deploy", "--name", "web")
    assert await http_get(port, "/version") == "v1\n"
