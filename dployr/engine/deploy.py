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

A deploy succeeds only once its release has passed its health check, or, without one, has
stayed up for the service's minimum uptime. If any step fails, the current release keeps
running untouched (a worker stopped first is started again), the deployment record says
failed (with the exit code and the last lines of build or crash output), and a ``system``
line says why. Every outcome, cancellation included, is written to the record: no deploy is
left "in progress". The settings and variables a deploy brings are saved as the service's
only when it succeeds.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import trio

from dployr.engine import images, jobs, sources, static
from dployr.engine.errors import DeployFailed
from dployr.engine.os import launcher
from dployr.engine.release import Running, pump
from dployr.logs.book import LogBook
from dployr.logs.framing import Lines
from dployr.models import Deployment, DeploymentStatus, ServiceSettings, ServiceType
from dployr.store.store import Store
from dployr.supervision import ChildContext

OUTPUT_TAIL = 20
"""Lines of build output kept in a failed deployment's record."""


class DeployLimits(Protocol):
    """The deadlines a deploy works within."""

    @property
    def fetch_timeout(self) -> float: ...

    @property
    def build_timeout(self) -> float: ...

    @property
    def deploy_deadline(self) -> float: ...


class RolloutTarget(Protocol):
    """What a deploy needs of its service: where its files go, how its processes run, and
    the roll-out of its release (which takes the service's lock itself)."""

    @property
    def name(self) -> str: ...

    @property
    def dir(self) -> Path:
        """The service's folder (its source cache, its releases)."""
        ...

    @property
    def book(self) -> LogBook: ...

    @property
    def store(self) -> Store: ...

    @property
    def config(self) -> DeployLimits: ...

    @property
    def instance_id(self) -> str:
        """The instance's id, carried by every process of the deploy."""
        ...

    def release_dir(self, deployment: int) -> Path: ...

    def run_as(self, settings: ServiceSettings) -> None: ...

    def process_env(
        self, deployment: int, port: int | None, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]: ...

    def process_started(self, running: Running) -> None: ...

    def process_ended(self, pid: int) -> None: ...

    def serving(self) -> bool:
        """Whether a release of the service runs now."""
        ...

    def deployment_changed(self, deployment: int, status: DeploymentStatus) -> None:
        """Publish a deployment's new status."""
        ...

    async def switch_to(self, run: DeployRun) -> None:
        """Roll the deploy's release out (see :meth:`DeployRun.run`'s start and switch)."""
        ...

    def keep_credential(self, credential: sources.Credential | None) -> None: ...

    async def prune_releases(self) -> None: ...

    def deploy_finished(self, run: DeployRun) -> None: ...

    def deploy_succeeded(self, run: DeployRun) -> None: ...

    def deploy_failed(self, run: DeployRun, reason: str) -> None: ...


class DeployRun:
    """The run function of one deploy; ``ChildSpec(f"deploy-{id}", DeployRun(...).run)``.

    A rollback (``deployment.rollback_of`` set) is a deployment of its own that runs an
    earlier release folder again: no fetch, no build.
    """

    def __init__(
        self,
        service: RolloutTarget,
        deployment: Deployment,
        credential: sources.Credential | None = None,
    ) -> None:
        self.service = service
        self.deployment = deployment
        # The password of the deploy's remote (its settings show it as ***): kept as the
        # service's, like the settings, only if the deploy succeeds.
        self.credential = credential
        self.id = deployment.id
        self.rollback = deployment.rollback_of is not None
        self.started_at = time.time()
        self.step = "pending"
        self.done = trio.Event()
        self.outcome = DeploymentStatus.FAILED
        self._tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        self._revision = deployment.revision or "?"
        self._failure = ""
        # The variables this deploy brings: its build and its release see them, the
        # service's environment gets them only if it succeeds.
        self.env: dict[str, str] = {}

    @property
    def release_dir(self) -> Path:
        """The release folder."""
        return self.service.release_dir(self.deployment.folder)

    @property
    def prefix(self) -> str:
        """How its system lines start: ``deploy 7`` or ``rollback 7``."""
        return f"rollback {self.id}" if self.rollback else f"deploy {self.id}"

    def say(self, text: str) -> None:
        """A system line of this deploy in the service's log."""
        self.service.book.system(f"{self.prefix}: {text}", deployment=self.id)

    def _set(self, status: DeploymentStatus, step: str) -> None:
        self.step = step
        self.service.store.update_deployment(self.service.name, self.id, status=status)
        self.service.deployment_changed(self.id, status)
        self.say(step)

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the deploy to its end and record how it ended.

        The last line (``succeeded``/``failed``) and the deployment's last change are
        published once the service is free for the next command: a client that waits for
        them may act at once.
        """
        task_status.started()
        config = self.service.config
        # The gits of this deploy carry the instance's mark too (see kill_leftovers).
        sources.PROCESS_MARKS.set((("DPLOYR_INSTANCE", self.service.instance_id),))
        try:
            with trio.fail_after(config.deploy_deadline):
                if not self.rollback:
                    self.env = self.service.store.deployment_env(self.service.name, self.id)
                    site = self.deployment.settings.type is ServiceType.STATIC
                    if site:  # a missing Caddy is said before anything is fetched
                        static.check_caddy(self.service.process_env(self.id, None).get("PATH"))
                    if self.deployment.settings.image is not None:  # a container image
                        self._revision = await images.pull(self)
                    else:
                        self._revision = await self._fetch()
                        await self._build()
                    if self.deployment.settings.dockerfile is not None:
                        await images.build(self)
                    if site:
                        await self._publish()
                await self._switch()
        except DeployFailed as failure:
            await self._fail(str(failure), failure.exit_code, failure.output_tail)
        except trio.TooSlowError:
            await self._fail(f"the deploy did not finish within {config.deploy_deadline:g} s")
        except BaseException as error:
            with ctx.shield():
                await self._fail(_why_ended(error))
            raise
        finally:
            self._announce()

    def _announce(self) -> None:
        """The deploy is over: free the service, then say how it ended."""
        service = self.service
        service.deploy_finished(self)
        if self.outcome is DeploymentStatus.SUCCEEDED:
            what = f"deployment {self.deployment.rollback_of}" if self.rollback else None
            running = what or self._revision[:12]
            job = jobs.is_job(self.deployment.settings)  # a job runs it on its schedule
            self.say(f"succeeded: {running} is {'what the job runs' if job else 'running'}")
            service.deploy_succeeded(self)
        else:
            still = " (the previous release is still running)" if service.serving() else ""
            self.say(f"failed: {self._failure}{still}")
            service.deploy_failed(self, self._failure)
        self.done.set()
        service.deployment_changed(self.id, self.outcome)

    # -- steps -----------------------------------------------------------------------------

    async def _fetch(self) -> str:
        source = self.deployment.settings.source
        self._set(DeploymentStatus.FETCHING, f"fetching {sources.redact(source.remote)}")
        cache = self.service.dir / "source"
        timeout = self.service.config.fetch_timeout
        try:
            revision = await sources.fetch(
                source, cache, timeout=timeout, credential=self.credential
            )
            self.service.store.update_deployment(self.service.name, self.id, revision=revision)
            await sources.checkout(source, cache, revision, self.release_dir, timeout=timeout)
        except sources.SourceError as error:
            raise DeployFailed(f"fetch failed: {error}") from error
        self.say(f"checked out {revision[:12]}")
        return revision

    async def _build(self) -> None:
        settings = self.deployment.settings
        cwd = self.release_dir / settings.working_dir
        if not cwd.is_dir():
            raise DeployFailed(f"working-dir {settings.working_dir!r} is not in the release")
        if not settings.build_cmd:
            return
        self._set(DeploymentStatus.BUILDING, f"building: {settings.build_cmd}")
        self.service.run_as(settings)
        env = self.service.process_env(self.id, None, self.env)
        timeout = self.service.config.build_timeout
        try:
            process = await launcher.launch(launcher.LaunchSpec(settings.build_cmd, cwd, env))
        except OSError as error:
            raise DeployFailed(f"build could not start: {error.strerror}") from error
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

    async def _publish(self) -> None:
        """Write the file server's configuration of a static site into its release."""
        settings = self.deployment.settings
        cwd = self.release_dir / settings.working_dir
        previous = None  # the release serving now: its fingerprinted assets stay reachable
        record = self.service.store.get_service(self.service.name)
        active = None if record is None else record.active_deployment
        if active is not None and active != self.id:
            before = self.service.store.get_deployment(self.service.name, active)
            if before is not None:
                number = before.release or active  # a rollback runs an older release
                folder = self.service.release_dir(number) / before.settings.working_dir
                previous = static.published(folder)
        self.say(await trio.to_thread.run_sync(static.publish, cwd, settings.static, previous))

    def _build_lines(self, lines: Lines, ts: float) -> None:
        self.service.book.append("build", lines, deployment=self.id, ts=ts)
        self._tail.extend(lines.lines)

    async def _switch(self) -> None:
        service = self.service
        job = jobs.is_job(self.deployment.settings)
        step = "switching the job to the new release" if job else "starting the new release"
        self._set(DeploymentStatus.STARTING, step)
        # The switch records it succeeded (and sets the outcome) in the same write that
        # makes it active.
        await service.switch_to(self)
        if not self.rollback:
            service.keep_credential(self.credential)
        with trio.CancelScope(shield=True):
            await service.prune_releases()

    # -- failure ---------------------------------------------------------------------------

    async def _fail(
        self, reason: str, exit_code: int | None = None, output_tail: tuple[str, ...] = ()
    ) -> None:
        if self.outcome is DeploymentStatus.SUCCEEDED:
            return  # it switched; what went wrong after that is not the deploy's failure
        self._failure = reason
        self.service.store.update_deployment(
            self.service.name,
            self.id,
            status=DeploymentStatus.FAILED,
            error=reason,
            exit_code=exit_code,
            output_tail=output_tail,
        )


def _why_ended(error: BaseException) -> str:
    """Why a deploy that raised ``error`` failed: cancelled (by a stop or delete, the
    cancellation perhaps grouped by a nursery it passed), or a bug, which still ends the
    deploy as failed before it crashes."""
    cancelled = isinstance(error, trio.Cancelled) or (
        isinstance(error, BaseExceptionGroup) and error.split(trio.Cancelled)[1] is None
    )
    if cancelled:
        return "cancelled: the service was stopped or deleted during the deploy"
    return f"internal error: {type(error).__name__}: {error}"
