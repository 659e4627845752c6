"""``make run ARGS=...`` starts the daemon with those options (issue 11, point 15)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from tests.cli.conftest import WAIT, clean_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


async def test_make_run_passes_args_to_the_daemon(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = f"--port 0 --data-dir {data} --service-host 127.0.0.1 --shared-user"
    process = await trio.lowlevel.open_process(
        ["make", "--no-print-directory", "-s", "-C", str(ROOT), "run", f"ARGS={args}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
        start_new_session=True,  # make and the daemon in a group of their own
    )
    assert process.stdout is not None
    seen = b""
    try:
        with trio.fail_after(WAIT):
            while b"data dir: " not in seen or not seen.endswith(b"\n"):
                chunk = await process.stdout.receive_some(4096)
                assert chunk, f"make run ended before the daemon was up: {seen!r}"
                seen += chunk
        assert f"data dir: {data}" in seen.decode()  # the data dir given in ARGS
        assert (data / "daemon.json").is_file()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        with trio.fail_after(WAIT):
            await process.wait()
        await process.stdout.aclose()
