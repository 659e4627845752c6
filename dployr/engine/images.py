"""The deploy steps of a container service: pull an image, or build one from a Dockerfile.

Both run podman as a build runs its command (its own cgroup, stopped with the deploy),
its output in the service's log as ``build`` lines (a pull's layers and bytes so far as
``pull progress:`` lines of the deploy besides, see :mod:`.pull_progress`), and record
the image a deployment runs, pinned
(:attr:`dployr.models.Deployment.image`): a rollback, a restart and a daemon restart run
those bytes, even after the tag moved. A deploy by tag pulls again every time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from dployr.engine import podman, pull_progress
from dployr.engine.errors import DeployFailed
from dployr.engine.os import launcher
from dployr.engine.pull_progress import PullProgress
from dployr.engine.release import Running, pump
from dployr.logs.framing import Lines
from dployr.models import DeploymentStatus

if TYPE_CHECKING:
    from dployr.engine.deploy import DeployRun


async def pull(run: DeployRun) -> str:
    """Pull the deploy's image; record it pinned; return the digest (its revision)."""
    ref = run.deployment.settings.image
    assert ref is not None
    _require()
    if podman.is_archive(ref):
        path = ref.split(":", 1)[1]
        if not path.startswith("/"):
            raise DeployFailed(f"fetch failed: the archive path in {ref!r} must be absolute")
    run._set(DeploymentStatus.FETCHING, f"pulling {ref}")
    # A digest names the same bytes forever: one already in the store is not fetched again.
    named = podman.digest_of(ref)
    found: tuple[str, str] | None = None
    if named is not None:
        # The index is one small local file (~50 KiB, read in well under a millisecond):
        # read on the trio thread, as the store's records are, not handed to a worker
        # thread (whose hand-off cost 10-25 ms of a deploy on a loaded machine).
        if podman.in_store(ref):
            found = ("", named)  # its id is not needed: the digest pins it
        else:
            found = await podman.find_image(ref)
    if found is not None:
        run.say(f"{ref} is in podman's store already")
        image_id, digest = found
    else:
        words = ["pull", *podman.tls_flags(ref), ref]
        with podman.auth_file(run.credential) as auth, _download_folder() as folder:
            if auth is not None:  # the registry's token, in a file only root can read
                words[1:1] = [f"--authfile={auth}"]
            env = podman.podman_env({"TMPDIR": str(folder)})
            watch = _PullWatch(run, folder)
            timeout = run.service.config.fetch_timeout
            printed = await _podman(run, words, "pull", timeout, env=env, watch=watch)
        try:
            # An archive is no name in podman's store: the pull printed its image's id.
            image_id, digest = await podman.inspect_image(
                printed if podman.is_archive(ref) else ref
            )
        except podman.PodmanFailed as error:
            raise DeployFailed(f"fetch failed: {error}") from None
    # What a deploy by digest records is that digest, though the same image may have
    # other digests in the store (pushed again, or under other names).
    digest = named or digest
    image = podman.pinned(ref, digest, image_id)
    run.deployment = run.service.store.update_deployment(
        run.service.name, run.id, revision=digest or image_id, image=image
    )
    run.say(f"pulled {image}")
    run.release_dir.mkdir(parents=True, exist_ok=True)
    return digest or image_id


async def build(run: DeployRun) -> None:
    """Build the release folder's Dockerfile with podman; record the image's id."""
    settings = run.deployment.settings
    dockerfile = settings.dockerfile
    assert dockerfile is not None
    _require()
    context = run.release_dir / settings.working_dir
    if not (run.release_dir / dockerfile).is_file():
        raise DeployFailed(f"dockerfile {dockerfile!r} is not in the release")
    tag = f"localhost/dployr/{run.service.name}:{run.id}"
    run._set(DeploymentStatus.BUILDING, f"building {dockerfile} with podman")
    words = ["build", "--file", str(run.release_dir / dockerfile), "--tag", tag]
    # The deploy's variables and secrets, and the build args (which win), by name: their
    # values are in podman's environment, never on its command line or in the log.
    own = podman.PODMAN_ENV  # (podman's own configuration is the daemon's)
    args = {k: v for k, v in run.env.items() if k not in own} | settings.build_args
    words += [f"--build-arg={key}" for key in sorted(args)]
    timeout = run.service.config.build_timeout
    await _podman(run, [*words, str(context)], "build", timeout, env=podman.podman_env(args))
    try:
        image_id, _ = await podman.inspect_image(tag)
    except podman.PodmanFailed as error:
        raise DeployFailed(f"build failed: {error}") from None
    run.deployment = run.service.store.update_deployment(run.service.name, run.id, image=image_id)
    run.say(f"built image {image_id[:12]} ({tag})")


PROGRESS_INTERVAL = 1.0
"""Seconds between two looks at how much a pull has downloaded (a line is written only
when it changed)."""


class _PullWatch:
    """A pull's progress as ``pull progress: …`` lines of the deploy, which the CLI
    shows as it follows the deploy and the dashboard's deploy view updates in place."""

    def __init__(self, run: DeployRun, folder: Path) -> None:
        self.run = run
        self.folder = folder
        self.progress = PullProgress()

    def lines(self, lines: Lines, ts: float) -> None:
        del ts
        if self.progress.lines(lines.lines):  # the last count, before podman clears it
            self.report()

    def report(self) -> None:
        self.progress.measured(pull_progress.downloaded(self.folder))
        news = self.progress.news()
        if news is not None:
            self.run.say(f"pull progress: {news}")

    async def every_interval(self) -> None:
        while True:
            await trio.sleep(PROGRESS_INTERVAL)
            self.report()


@contextlib.contextmanager
def _download_folder() -> Iterator[Path]:
    """A folder of one pull's own for podman's downloads (its ``TMPDIR``), in the place
    podman uses by default (large files: not /tmp, often in memory)."""
    base = os.environ.get("TMPDIR") or "/var/tmp"
    folder = Path(tempfile.mkdtemp(prefix="dployr-pull-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _until_cancelled(task: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
    with scope:
        await task()


def _require() -> None:
    try:
        podman.require()
    except podman.PodmanMissing as error:
        raise DeployFailed(str(error)) from None


async def _podman(
    run: DeployRun,
    words: list[str],
    what: str,
    limit: float,
    *,
    env: dict[str, str] | None = None,
    watch: _PullWatch | None = None,
) -> str:
    """Run a podman step, its output in the log (and shown to ``watch``); DeployFailed
    with its last line if it fails. Returns the last line it printed on stdout."""
    printed = [""]

    def on_stdout(lines: Lines, ts: float) -> None:
        on_stderr(lines, ts)
        printed[0] = next((line for line in reversed(lines.lines) if line.strip()), printed[0])

    def on_stderr(lines: Lines, ts: float) -> None:
        run._build_lines(lines, ts)
        if watch is not None:
            watch.lines(lines, ts)

    env = env or podman.podman_env()
    progress = trio.CancelScope()  # the pull's progress reports, while podman runs
    env["DPLOYR_INSTANCE"] = run.service.instance_id
    try:
        process = await launcher.launch_program(podman.argv(*words), env, label=run.service.name)
    except OSError as error:
        raise DeployFailed(f"podman {what} could not start: {error.strerror}") from None
    run.service.process_started(Running(process.pid, None, run.id, time.time()))
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            assert process.stderr is not None
            nursery.start_soon(pump, process.stdout, on_stdout)
            nursery.start_soon(pump, process.stderr, on_stderr)
            with trio.move_on_after(limit) as timer:
                if watch is not None:
                    nursery.start_soon(_until_cancelled, watch.every_interval, progress)
                await process.wait()
                progress.cancel()
                await launcher.kill_rest(process)
            if timer.cancelled_caught:
                await launcher.stop(process, 2.0)
                raise DeployFailed(f"podman {what} timed out after {limit:g} s")
    finally:
        with trio.CancelScope(shield=True):
            await launcher.stop(process, 2.0)
        run.service.process_ended(process.pid)
    code = process.returncode
    if code != 0:
        last = next((line for line in reversed(run._tail) if line.strip()), "")
        last = last.removeprefix("Error: ")
        step = "fetch" if what == "pull" else "build"
        raise DeployFailed(
            f"{step} failed: podman {what} exited {code}: {last}",
            exit_code=code,
            output_tail=tuple(run._tail),
        )
    return printed[0].strip()
