"""Rolling a release out: the steps of :mod:`.rollout`'s pure machine, carried out.

Every change of the running release takes this path: the new release starts beside the
current one on its own private port, new connections go to it only once it is ready (its
health check passes, or without one its port accepts), the old release drains
(connections in flight finish, up to its stop grace) and stops. A deploy, a rollback and
a restart of a service with a port take this path with its readiness check; a start, a
hard restart and the recovery at daemon start (with nothing else serving) switch without
waiting. Which step comes next, and what a failure undoes, the machine says; this layer
only does the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from dployr.engine import jobs
from dployr.engine import status as st
from dployr.engine.errors import NotDeployed
from dployr.engine.proxy import Proxy
from dployr.engine.release import ReleaseSpec
from dployr.engine.service.core import LiveRelease
from dployr.engine.service.readiness import ReleaseReadiness
from dployr.engine.service.rollout import Plan, Rollout, Step, stops_first
from dployr.models import Deployment, DeploymentStatus

if TYPE_CHECKING:
    from pathlib import Path

    from dployr.engine.deploy import DeployRun


@attrs.define
class _Progress:
    """What a roll-out has made so far (the trio layer's side of the machine's state)."""

    deployment: Deployment
    folder: Path
    run: DeployRun | None
    previous: LiveRelease | None
    spec: ReleaseSpec | None = None
    proxy: Proxy | None = None
    """The proxy of the new release (the running one, or one bound for it)."""
    old_proxy: Proxy | None = None
    """The proxy that served before the switch."""


class ServiceRollouts(ReleaseReadiness):
    """Roll-outs, and the deploy's milestones."""

    async def switch_to(self, run: DeployRun) -> None:
        """A deploy's last step: roll its release out, under the service's lock.

        The switch records the deploy succeeded (and sets its outcome) in the same write
        that makes it active.
        """
        async with self.lock:
            await self.roll_out(run.deployment, gate=True, run=run)

    async def roll_out(
        self, deployment: Deployment, *, gate: bool, run: DeployRun | None = None
    ) -> None:
        """Make a new release of ``deployment`` the service's; raise DeployFailed if it can't.

        With ``gate`` the switch waits until the new release is ready. Then the active
        deployment is written (for a deploy ``run``, with the settings and variables it
        brought), new connections go to the new release, and the old one drains and
        stops. On failure the new release is stopped and the current one keeps serving
        untouched; a worker stopped first is started again.
        """
        folder = self.release_dir(deployment.folder)
        if not folder.is_dir():
            raise NotDeployed(
                f"the release folder of deployment {deployment.folder} is gone: deploy again"
            )
        job = self.job is not None or jobs.is_job(deployment.settings)  # runs, not a release
        if job and await jobs.runner_of(self).roll_out(deployment, run):
            return
        await self._ensure_tree()
        previous = self.releases.get(self.current) if self.current else None
        rollout = Rollout(
            Plan(
                old=previous.spec.child_id if previous is not None else None,
                old_serving=previous is not None and not previous.gave_up,
                stop_first=stops_first(deployment.settings),
                gate=gate,
            )
        )
        progress = _Progress(deployment, folder, run, previous)
        error: BaseException | None = None
        step = rollout.step
        while not step.final:
            try:
                if error is None:
                    await self._take(step, progress)
                else:  # undoing: whatever cancelled the roll-out waits for the undo
                    with trio.CancelScope(shield=True):
                        await self._take(step, progress)
            except BaseException as failure:
                if error is None:  # the first failure is the roll-out's
                    error = failure
                else:  # what undoing it met goes with it, never lost
                    error.add_note(f"then, undoing it, {step.name} failed: {failure!r}")
                step = rollout.failed(step, stopping=self._stopping or self.tree is None)
            else:
                step = rollout.done(step)
        if error is not None:
            raise error

    async def _take(self, step: Step, progress: _Progress) -> None:
        match step:
            case Step.STOP_OLD_FIRST:
                assert progress.previous is not None
                child_id = progress.previous.spec.child_id
                mode = progress.deployment.settings.rollout.value
                self._say_for(progress, f"stopping release {child_id} first (rollout {mode})")
                await self.stop_release(child_id)
            case Step.START_NEW:
                await self._start_new(progress)
            case Step.WAIT_READY:
                assert progress.spec is not None
                await self._wait_ready(progress.spec, lambda text: self._say_for(progress, text))
            case Step.SWITCH:
                self._switch(progress)
                if (
                    progress.previous is None
                    or progress.previous.spec.child_id not in self.releases
                ):
                    await self._stop_old_proxy(progress)
            case Step.STOP_OLD:
                await self._stop_old(progress)
            case Step.UNDO_NEW:
                if progress.spec is not None:
                    await self.stop_release(progress.spec.child_id)
                if progress.proxy is not None and progress.proxy is not self.proxy:
                    await self._stop_proxy(progress.proxy)
            case Step.START_OLD_AGAIN:
                assert progress.previous is not None
                await self._start_again(progress.previous.deployment)
            case _:
                raise AssertionError(f"not a step to take: {step}")

    def _say_for(self, progress: _Progress, text: str) -> None:
        if progress.run is not None:
            progress.run.say(text)
        else:
            self.book.system(text)

    async def _start_new(self, progress: _Progress) -> None:
        run = progress.run
        spec = self._release_spec(
            progress.deployment, progress.folder, run.env if run is not None else None
        )
        # The public port is bound before anything starts: a port another program holds
        # fails the roll-out here, with nothing promoted and nothing to undo.
        progress.proxy = await self._proxy_for(progress.deployment.settings)
        progress.spec = spec
        await self._start_release(spec, progress.deployment)

    def _switch(self, progress: _Progress) -> None:
        """Promote the new release: record it, route new connections to it.

        For a deploy (``run``), the same write records it succeeded, makes its settings (less
        a one-off ``--commit``) the service's and adds the variables it brought to the
        service's environment; a rollback is recorded succeeded and changes neither.
        """
        deployment, spec, run = progress.deployment, progress.spec, progress.run
        assert spec is not None
        # Written before it is acted on.
        if run is not None:
            settings = None
            if not run.rollback:
                source = attrs.evolve(deployment.settings.source, commit=None)
                settings = attrs.evolve(deployment.settings, source=source)
            self._cached = self.store.activate_deployment(
                self.name, deployment.id, settings=settings
            )
            run.outcome = DeploymentStatus.SUCCEEDED  # whatever happens next, it switched
        else:  # a restart, a start: the environment is the service's as it is
            self._cached = self.store.set_active_deployment(self.name, deployment.id)
        live = self.releases[spec.child_id]
        self.current = spec.child_id
        self._advance(st.Promoted(spec.child_id, live.pid, live.process_started))
        self._set_health(live.health.health, live.health.message)
        progress.old_proxy, self.proxy = self.proxy, progress.proxy
        if progress.proxy is not None:
            progress.proxy.switch(spec.port)
        if not deployment.settings.listen_fds and self.listener is not None:
            self.listener.close()
            self.listener = None

    async def _stop_old(self, progress: _Progress) -> None:
        """Let the old release drain (up to its stop grace), then stop it and its proxy."""
        previous = progress.previous
        assert previous is not None
        if previous.spec.port is not None and progress.old_proxy is not None:
            # Connections in flight finish first, up to the old release's stop grace.
            with trio.move_on_after(previous.spec.grace):
                await progress.old_proxy.drained(previous.spec.port)
        await self._stop_old_proxy(progress)
        await self.stop_release(previous.spec.child_id)

    async def _stop_old_proxy(self, progress: _Progress) -> None:
        old = progress.old_proxy
        if old is not None and old is not progress.proxy:
            await self._stop_proxy(old)

    async def _start_again(self, deployment: Deployment) -> None:
        """A stop-first roll-out failed: run the release that was stopped for it again."""
        try:
            await self.roll_out(deployment, gate=False)
        except Exception as error:  # the deploy's own failure is the one to report
            self.book.system(f"could not start deployment {deployment.id} again: {error}")
        else:
            self.book.system(f"deployment {deployment.id} was started again")

    # -- deploy milestones (called by DeployRun) -------------------------------------------

    def deploy_succeeded(self, run: DeployRun) -> None:
        """The deploy switched to its release."""
        self._advance(st.DeployEnded(run.id, succeeded=True))

    def deploy_failed(self, run: DeployRun, reason: str) -> None:
        """The deploy failed; what ran before keeps running."""
        what = "rollback" if run.rollback else "deploy"
        message = f"{what} {run.id} failed: {reason}"
        self._advance(st.DeployEnded(run.id, succeeded=False, message=message))

    def deploy_finished(self, run: DeployRun) -> None:
        """The deploy ended, either way: another may start."""
        if self.deploy is run:
            self.deploy = None
