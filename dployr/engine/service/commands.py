"""A service's commands: deploy, rollback, start, stop, restart, settings, env, delete.

Commands on one service are serialised by its lock, and each checks its rules before it
changes anything: a deploy in progress refuses another command (a stop cancels it), a
rollback goes only to a kept successful release, a setting is validated whole. Reads
(:mod:`.reads`) never wait behind a command. Every task a command causes lives in the
service's supervision tree.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import attrs
import trio

from dployr.engine import status as st
from dployr.engine.deploy import DeployRun
from dployr.engine.errors import Conflict, DeployFailed, DeployInProgress
from dployr.engine.os import users
from dployr.engine.service.reads import APPLIES_NOW, ServiceReads
from dployr.engine.sources import HIDDEN_PASSWORD, Credential, hide_password, take_password
from dployr.errors import ActorDead
from dployr.models import (
    Deployment,
    DeploymentStatus,
    DesiredState,
    InvalidSetting,
    ServiceSettings,
    ServiceType,
)
from dployr.protocol.messages import EnvListing, ServiceInfo, SettingsChange, SettingsView
from dployr.staticsite import StaticOptions
from dployr.store.errors import DiskFull
from dployr.supervision import ChildSpec, Restart

_CLEARABLE = frozenset({"port", "build_cmd", "health_check", "user"})


def _left_behind(current: ServiceSettings, updates: Mapping[str, object]) -> dict[str, object]:
    """What a change of type drops, unless the change gives it: the old type's own options
    (a static site's publishing, a job's), and the run command of a site made static."""
    new = updates.get("type")
    if new is None or new is current.type:
        return {}
    dropped: dict[str, object] = {}
    if current.type is ServiceType.STATIC:
        dropped["static"] = StaticOptions()
    if current.type is ServiceType.JOB:
        dropped["job"] = None
    if new is ServiceType.STATIC:
        dropped["run_cmd"] = ""
    return dropped


class Service(ServiceReads):
    """A service of an instance; the instance creates one per stored service.

    Its jobs are layered, one module each, each class building on the one below:
    :class:`.core.ServiceCore` (state), :class:`.events.ServiceEvents`,
    :class:`.tree.ServiceTree`, :class:`.readiness.ReleaseReadiness`,
    :class:`.rolling.ServiceRollouts`, :class:`.reads.ServiceReads`, and these commands.
    """

    def _check_idle(self) -> None:
        if self.deploy is not None:
            started = time.strftime("%H:%M:%S", time.localtime(self.deploy.started_at))
            raise DeployInProgress(
                f"{self.deploy.prefix} of {self.name} is already running "
                f"(started at {started}); wait for it to finish"
            )

    async def deploy_now(
        self,
        settings: ServiceSettings | None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        credential: Credential | None = None,
    ) -> Deployment:
        """Start a deploy in the service's tree and return its record at once.

        The settings and variables given are the deploy's own: they are saved as the
        service's only if it succeeds. So is ``credential``, the password of the remote.
        """
        self._check_idle()  # at once: the lock may be held by a deploy's readiness wait
        async with self.lock:
            self._check_idle()
            record = self._record()
            self._cached = self.store.set_desired(self.name, DesiredState.RUNNING)
            deployment = self.store.create_deployment(
                self.name, settings or record.settings, env=env, secrets=secrets
            )
            await self._begin(DeployRun(self, deployment, credential))
            self.last_deploy_at = deployment.created_at
            return deployment

    async def rollback(self, deployment_id: int | None) -> Deployment:
        """Go back to a kept release without rebuilding (default: the one that ran before).

        The rollback is a deployment of its own, in the history like any deploy.
        """
        self._check_idle()
        async with self.lock:
            self._check_idle()
            target = self._rollback_target(deployment_id)
            self._cached = self.store.set_desired(self.name, DesiredState.RUNNING)
            deployment = self.store.create_deployment(
                self.name, target.settings, rollback_of=target
            )
            await self._begin(DeployRun(self, deployment))
            return deployment

    def _rollback_target(self, deployment_id: int | None) -> Deployment:
        active = self._record().active_deployment
        succeeded = [
            d
            for d in self.store.deployments(self.name, limit=1000)
            if d.status is DeploymentStatus.SUCCEEDED
        ]
        kept = {d.id: d for d in succeeded if self.release_dir(d.folder).is_dir()}
        current = next((d for d in succeeded if d.id == active), None)
        if deployment_id is None:
            # Undo: the release that ran before the current one, the newest success
            # before it that runs another folder.
            before = [
                d
                for d in succeeded
                if (active is None or d.id < active)
                and (current is None or d.folder != current.folder)
            ]
            if not before:
                raise Conflict(f"{self.name} has no earlier successful release to roll back to")
            target = before[0]
            if target.id not in kept:
                raise Conflict(
                    f"the release that ran before the current one (deployment {target.id} "
                    f"of {self.name}) is no longer kept: roll back to a kept one by its number"
                )
            return target
        if deployment_id == active:
            raise Conflict(f"deployment {deployment_id} is already the active one")
        wanted = kept.get(deployment_id)
        if wanted is not None and current is not None and wanted.folder == current.folder:
            raise Conflict(
                f"deployment {deployment_id}'s release is the one running now "
                f"(deployment {active} runs it)"
            )
        if deployment_id not in kept:
            raise Conflict(
                f"deployment {deployment_id} of {self.name} is not a kept successful release"
            )
        return kept[deployment_id]

    async def _begin(self, run: DeployRun) -> None:
        tree = await self._ensure_tree()
        self.deploy = run
        self._advance(st.DeployBegan(run.id))
        # Not "deploy 7: ..." like its steps: a client following the steps need not show it.
        back = f": back to deployment {run.deployment.rollback_of}" if run.rollback else ""
        self.book.system(f"{run.prefix} started{back}", deployment=run.id)
        await tree.start_child(ChildSpec(f"deploy-{run.id}", run.run, restart=Restart.TEMPORARY))

    async def start(self) -> ServiceInfo:
        """Start the active deployment if the service is stopped or failed."""
        async with self.lock:
            deployment = self._active_deployment()
            self._cached = self.store.set_desired(self.name, DesiredState.RUNNING)
            if not self.serving() or self.current is None:
                self._advance(st.Started())
                await self.roll_out(deployment, gate=False)
            return self.info()

    async def stop(self) -> ServiceInfo:
        """Stop everything of the service; it stays stopped until started.

        A deploy in progress is cancelled first (recorded as failed), even while it waits
        for its new release, so a stop never waits for a deploy to end.
        """
        async with self._stopping_deploy(), self.lock:
            recorded = ""
            try:
                self._cached = self.store.set_desired(self.name, DesiredState.STOPPED)
            except DiskFull:
                # A stop frees what the service holds: it must work on a full disk too.
                recorded = (
                    " (not recorded: the disk is full, so a daemon started again before"
                    " the next stop or start would run it again)"
                )
            if self.job is not None:  # nothing falls due until it is started again
                self.job.stopped()
            await self._take_down()
            self.book.system(f"stopped{recorded}")
            return self.info()

    async def restart(self, *, hard: bool = False) -> ServiceInfo:
        """Run the current deployment again, with the current environment.

        A service with a port takes the zero-downtime path (the new process starts beside
        the old one, which drains and stops once the new one is ready), so a restart drops
        no request; ``hard`` (and a worker without a port) stops, then starts.
        """
        self._check_idle()
        async with self.lock:
            self._check_idle()
            deployment = self._active_deployment()
            self._cached = self.store.set_desired(self.name, DesiredState.RUNNING)
            self._advance(st.Started())
            running = self.serving() and self.current is not None
            self._advance(st.RestartBegan())
            if running and not hard and deployment.settings.port is not None:
                self.book.system("restarting without downtime")
                try:
                    await self.roll_out(deployment, gate=True)
                except DeployFailed as failure:
                    message = f"restart failed: {failure} (the old process still runs)"
                    self.book.system(message)
                    self._advance(st.RestartFailed(message))
                    raise Conflict(f"restart of {self.name} failed: {failure}") from failure
            else:
                self.book.system("restarting")
                if self.current is not None:
                    await self.stop_release(self.current)
                try:
                    await self.roll_out(deployment, gate=False)
                except Exception as error:
                    self._advance(st.RestartFailed(f"restart failed: {error}"))
                    raise
            return self.info()

    async def update_settings(self, change: SettingsChange) -> SettingsView:
        """Store changed settings for the next deploy; nothing running is touched.

        Refused while a deploy runs: that deploy's settings are saved when it succeeds, and
        a change made meanwhile would be lost or mixed with them.
        """
        self._check_idle()
        async with self.lock:
            self._check_idle()
            current = self._record().settings
            credential = None
            if change.source is not None:  # stored with its password as ***
                source, credential = hide_password(change.source, self.kept_credential())
                change = attrs.evolve(change, source=source)
            unknown = change.clear - _CLEARABLE
            if unknown:
                names = ", ".join(sorted(unknown))
                raise InvalidSetting(
                    f"cannot clear {names}: only port, build-cmd, health-check and user"
                )
            updates = {
                f.name: getattr(change, f.name)
                for f in attrs.fields(SettingsChange)
                if f.name != "clear" and getattr(change, f.name) is not None
            }
            updates.update(dict.fromkeys(change.clear))
            if "service_type" in updates:  # a new type drops what only the old one had
                updates["type"] = updates.pop("service_type")
                updates = {**_left_behind(current, updates), **updates}
            settings = attrs.evolve(current, **updates)  # validates every field again
            users.check_user(settings.user)
            if settings.port != current.port:
                self.instance.check_port(self.name, settings.port)
            if change.source is not None:
                self.keep_credential(credential)
            if settings != current:
                self._cached = self.store.update_settings(self.name, settings)
            return self.settings_view()

    # The password of the remote is kept apart from the settings (which show it as ***),
    # sealed in the store; see sources.hide_password.

    def seal_stored_password(self) -> None:
        """Move a password that an older dployr stored in the settings into the sealed store.

        (Deployment records keep the settings they were deployed with, as they were.)
        """
        settings = self._record().settings
        _, password = take_password(settings.source.remote)
        if password is None or password == HIDDEN_PASSWORD:
            return
        source, credential = hide_password(settings.source, None)
        self.keep_credential(credential)
        self._cached = self.store.update_settings(self.name, attrs.evolve(settings, source=source))

    def keep_credential(self, credential: Credential | None) -> None:
        """Keep ``credential`` as the password of the service's remote (None: keep none)."""
        if credential is None:
            self.store.forget_git_credential(self.name)
        else:
            self.store.set_git_credential(self.name, credential.remote, credential.password)

    async def set_env(self, values: dict[str, str], *, secret: bool, restart: bool) -> EnvListing:
        """Store variables now; they reach the process at its next start."""
        self.store.set_env(self.name, values, secret=secret)
        return await self._env_changed(restart)

    async def unset_env(self, keys: tuple[str, ...], *, restart: bool) -> EnvListing:
        """Remove variables; the process sees it at its next start.

        A key that is not set is bad input: refused, and nothing is removed.
        """
        # Checked and removed with no await between: nothing can set a key in between.
        missing = sorted(set(keys) - {var.key for var in self.store.env_listing(self.name)})
        if missing:
            verb = "was" if len(missing) == 1 else "were"
            raise InvalidSetting(f"{', '.join(missing)} {verb} not set: nothing was unset")
        self.store.unset_env(self.name, keys)
        return await self._env_changed(restart)

    async def _env_changed(self, restart: bool) -> EnvListing:
        if restart and self._record().active_deployment is not None:
            await self.restart()
            return self.env_listing(APPLIES_NOW)
        return self.env_listing()

    async def delete(self, *, purge: bool = False) -> None:
        """Stop the service and remove its configuration, releases and history.

        Its data folder stays (a service created again with the same name finds it),
        unless ``purge``.
        """
        async with self._stopping_deploy(), self.lock:
            await self._take_down()
            try:
                self.store.delete_service(self.name)
            except DiskFull:
                # No room even for the deletion: free the service's files first (its
                # history is most of them), then delete its records.
                self.book.close()
                await trio.to_thread.run_sync(shutil.rmtree, self.dir, True)
                self.store.delete_service(self.name)
            self._cached = None
            self.book.close()
            await trio.to_thread.run_sync(_remove_service_dir, self.dir, self.data_dir, purge)

    async def recover(self) -> None:
        """At daemon start: bring the service back as it should be."""
        record = self._record()
        if record.desired is not DesiredState.RUNNING:
            return
        if record.active_deployment is None:
            self._advance(st.Failed("no successful deployment to start"))
            return
        async with self.lock:
            try:
                await self.roll_out(self._active_deployment(), gate=False)
            except Exception as error:  # one service that cannot start must not stop the rest
                message = f"could not start after the daemon restarted: {error}"
                self.book.system(message)
                self._advance(st.Failed(message))

    @contextlib.asynccontextmanager
    async def _stopping_deploy(self) -> AsyncIterator[None]:
        """Cancel a deploy in progress (it holds the lock while it waits for its release),
        and let nothing it undoes start again meanwhile."""
        self._stopping = True
        try:
            run, tree = self.deploy, self.tree
            if run is not None and tree is not None:
                with contextlib.suppress(KeyError, ActorDead):
                    await tree.delete_child(f"deploy-{run.id}")
                await run.done.wait()
            yield
        finally:
            self._stopping = False


def _remove_service_dir(folder: Path, data: Path, purge: bool) -> None:
    """Remove a deleted service's folder; all of it with ``purge``, else all but ``data``."""
    if purge or not data.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        return
    with contextlib.suppress(FileNotFoundError):
        for entry in folder.iterdir():
            if entry != data:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
