"""The deploy steps of a container service: pull an image, or build one from a Dockerfile.

Both run podman as a build runs its command (its own cgroup, stopped with the deploy),
its output in the service's log as ``build`` lines (the pull's progress: layers copied,
manifest written), and record the image a deployment runs, pinned
(:attr:`dployr.models.Deployment.image`): a rollback, a restart and a daemon restart run
those bytes, even after the tag moved. A deploy by tag pulls again every time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from dployr.engine import podman
from dployr.engine.errors import DeployFailed
from dployr.engine.os import launcher
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
        if await trio.to_thread.run_sync(podman.in_store, ref):
            found = ("", named)  # its id is not needed: the digest pins it
        else:
            found = await podman.find_image(ref)
    if found is not None:
        run.say(f"{ref} is in podman's store already")
        image_id, digest = found
    else:
        words = ["pull", *podman.tls_flags(ref), ref]
        with podman.auth_file(run.credential) as auth:
            if auth is not None:  # the registry's token, in a file only root can read
                words[1:1] = [f"--authfile={auth}"]
            printed = await _podman(run, words, "pull", run.service.config.fetch_timeout)
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
    await _podman(run, [*words, str(context)], "build", timeout, podman.podman_env(args))
    try:
        image_id, _ = await podman.inspect_image(tag)
    except podman.PodmanFailed as error:
        raise DeployFailed(f"build failed: {error}") from None
    run.deployment = run.service.store.update_deployment(run.service.name, run.id, image=image_id)
    run.say(f"built image {image_id[:12]} ({tag})")


def _require() -> None:
    try:
        podman.require()
    except podman.PodmanMissing as error:
        raise DeployFailed(str(error)) from None


async def _podman(
    run: DeployRun, words: list[str], what: str, limit: float, env: dict[str, str] | None = None
) -> str:
    """Run a podman step, its output in the log; DeployFailed with its last line if it
    fails. Returns the last line it printed on stdout."""
    printed = [""]

    def on_stdout(lines: Lines, ts: float) -> None:
        run._build_lines(lines, ts)
        printed[0] = next((line for line in reversed(lines.lines) if line.strip()), printed[0])

    env = env or podman.podman_env()
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
            nursery.start_soon(pump, process.stderr, run._build_lines)
            with trio.move_on_after(limit) as timer:
                await process.wait()
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
