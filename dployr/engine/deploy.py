"""The builder actor: one deploy of one service, from source to the switch.

Started by the service supervisor as the temporary child ``deploy-<id>``, it runs the steps
in order, each with its own deadline inside the deploy's overall one:

1. **fetch**: the cached clone is fetched (never re-cloned) and the revision checked out
   into a new release folder, ``services/<name>/releases/<id>/``;
2. **build**: the build command runs in the release folder (plus the working dir), its
   output streamed into the service's history as ``build`` lines;
3. **start**: the new release starts beside the current one, on its own private port, and
   must pass its health check, or without one accept connections there (a worker without
   a port: must have started);
4. **switch**: the new deployment is written as the active one, the proxy sends new
   connections to it, and the old release is stopped.

If any step fails, the current release keeps running untouched, the deployment record says
failed (with the exit code and the last lines of build output), and a ``system`` line says
why. Every outcome, cancellation included, is written to the record: no deploy is left "in
progress".
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from dployr.engine import launcher, sources
from dployr.engine.errors import DeployFailed
from dployr.engine.release import Running, pump
from dployr.logs.framing import Lines
from dployr.models import Deployment, DeploymentStatus
from dployr.supervision import ChildContext

if TYPE_CHECKING:
    from dployr.engine.service import Service

OUTPUT_TAIL = 20
"""Lines of build output kept in a failed deployment's record."""


class DeployRun:
    """The run function of one deploy; ``ChildSpec(f"deploy-{id}", DeployRun(...).run)``.

    With ``rollback``, ``deployment`` is a kept release to switch back to: no fetch, no
    build, and its record (already finished) is left as it is.
    """

    def __init__(self, service: Service, deployment: Deployment, *, rollback: bool = False) -> None:
        self.service = service
        self.deployment = deployment
        self.id = deployment.id
        self.rollback = rollback
        self.started_at = time.time()
        self.step = "pending"
        self.done = trio.Event()
        self.outcome = DeploymentStatus.FAILED
        self._tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)

    @property
    def release_dir(self) -> Path:
        """The release folder."""
        return self.service.release_dir(self.id)

    @property
    def _prefix(self) -> str:
        return f"rollback to deployment {self.id}" if self.rollback else f"deploy {self.id}"

    def _say(self, text: str) -> None:
        self.service.book.system(f"{self._prefix}: {text}", deployment=self.id)

    def _set(self, status: DeploymentStatus, step: str) -> None:
        self.step = step
        if not self.rollback:
            self.service.store.update_deployment(self.id, status=status)
            self.service.instance.deployment_changed(self.service.name, self.id, status)
        self._say(step)

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the deploy to its end and record how it ended."""
        task_status.started()
        config = self.service.config
        # The gits of this deploy carry the instance's mark too (see kill_leftovers).
        sources.PROCESS_MARKS.set((("DPLOYR_INSTANCE", self.service.instance.id),))
        try:
            with trio.fail_after(config.deploy_deadline):
                if self.rollback:
                    revision = self.deployment.revision or "?"
                else:
                    revision = await self._fetch()
                    await self._build()
                await self._switch(revision)
        except DeployFailed as failure:
            await self._fail(str(failure), failure.exit_code, failure.output_tail)
        except trio.TooSlowError:
            await self._fail(f"the deploy did not finish within {config.deploy_deadline:g} s")
        except trio.Cancelled:
            with ctx.shield():
                await self._fail("cancelled: the service was stopped or deleted during the deploy")
            raise
        except Exception as error:  # a bug must still end the deploy as failed, then crash
            with ctx.shield():
                await self._fail(f"internal error: {type(error).__name__}: {error}")
            raise
        finally:
            # Announced last, once another deploy may start.
            self.service.deploy_finished(self)
            self.done.set()
            # A rollback leaves its (finished) record as it is; its event says how it went.
            self.service.instance.deployment_changed(self.service.name, self.id, self.outcome)

    # -- steps -----------------------------------------------------------------------------

    async def _fetch(self) -> str:
        source = self.deployment.settings.source
        self._set(DeploymentStatus.FETCHING, f"fetching {source.remote}")
        cache = self.service.dir / "source"
        timeout = self.service.config.fetch_timeout
        try:
            revision = await sources.fetch(source, cache, timeout=timeout)
            self.service.store.update_deployment(self.id, revision=revision)
            await sources.checkout(source, cache, revision, self.release_dir, timeout=timeout)
        except sources.SourceError as error:
            raise DeployFailed(f"fetch failed: {error}") from None
        self._say(f"checked out {revision[:12]}")
        return revision

    async def _build(self) -> None:
        settings = self.deployment.settings
        cwd = self.release_dir / settings.working_dir
        if not cwd.is_dir():
            raise DeployFailed(f"working-dir {settings.working_dir!r} is not in the release")
        if not settings.build_cmd:
            return
        self._set(DeploymentStatus.BUILDING, f"building: {settings.build_cmd}")
        env = self.service.process_env(self.id, None)
        timeout = self.service.config.build_timeout
        try:
            process = await launcher.launch(launcher.LaunchSpec(settings.build_cmd, cwd, env))
        except OSError as error:
            raise DeployFailed(f"build could not start: {error.strerror}") from None
        self.service.process_started(Running(process.pid, None, self.id, time.time()))
        try:
            async with trio.open_nursery() as nursery:
                assert process.stdout is not None
                assert process.stderr is not None
                nursery.start_soon(pump, process.stdout, self._build_lines)
                nursery.start_soon(pump, process.stderr, self._build_lines)
                with trio.move_on_after(timeout) as timer:
                    await process.wait()
                    # What the build left running (holding the output pipes) ends with it.
                    await launcher.kill_rest(process)
                if timer.cancelled_caught:
                    await launcher.stop(process, 2.0)
                    raise DeployFailed(
                        f"build timed out after {timeout:g} s", output_tail=tuple(self._tail)
                    )
        finally:
            with trio.CancelScope(shield=True):
                await launcher.stop(process, 2.0)
            self.service.process_ended(process.pid)
        code = process.returncode
        assert code is not None
        if code != 0:
            what = f"exited {code}" if code > 0 else f"was killed by signal {-code}"
            raise DeployFailed(f"build {what}", exit_code=code, output_tail=tuple(self._tail))

    def _build_lines(self, lines: Lines, ts: float) -> None:
        self.service.book.append("build", lines, deployment=self.id, ts=ts)
        self._tail.extend(lines.lines)

    async def _switch(self, revision: str) -> None:
        service = self.service
        self._set(DeploymentStatus.STARTING, "starting the new release")
        async with service.lock:
            await service.roll_out(self.deployment, gate=True)
        if not self.rollback:
            service.store.update_deployment(self.id, status=DeploymentStatus.SUCCEEDED)
        self.outcome = DeploymentStatus.SUCCEEDED
        self._say(f"succeeded: {revision[:12]} is running")
        service.deploy_succeeded(self)
        with trio.CancelScope(shield=True):
            await service.prune_releases()

    # -- failure ---------------------------------------------------------------------------

    async def _fail(
        self, reason: str, exit_code: int | None = None, output_tail: tuple[str, ...] = ()
    ) -> None:
        service = self.service
        if self.outcome is DeploymentStatus.SUCCEEDED:
            return  # it switched; what went wrong after that is not the deploy's failure
        if not self.rollback:
            service.store.update_deployment(
                self.id,
                status=DeploymentStatus.FAILED,
                error=reason,
                exit_code=exit_code,
                output_tail=output_tail,
            )
        still = " (the previous release is still running)" if service.serving() else ""
        self._say(f"failed: {reason}{still}")
        service.deploy_failed(self, reason)
