"""What a service is and does now: its info, settings and environment, as read."""

from __future__ import annotations

import attrs

from dployr.engine.errors import NotDeployed
from dployr.engine.service.rolling import ServiceRollouts
from dployr.engine.sources import Credential
from dployr.models import Deployment, ServiceSettings
from dployr.protocol.messages import EnvListing, ServiceInfo, SettingsView

APPLIES_LATER = "at the next start, restart or deploy"
APPLIES_NOW = "now: the service was restarted"


class ServiceReads(ServiceRollouts):
    """Reads: they never wait behind a command (a 10-second stop, say)."""

    def info(self) -> ServiceInfo:
        """What the service is and does now."""
        record = self._record()
        state = self.state
        running = self.releases.get(self.current) if self.current else None
        settings = running.deployment.settings if running else record.settings
        return ServiceInfo(
            name=self.name,
            instance=self.instance.name,
            status=state.status,
            health=self.health,
            pid=state.pid,
            port=settings.port,
            restarts=state.restarts,
            deployment=record.active_deployment,
            description=record.settings.description,
            deploying=self.deploy.id if self.deploy is not None else None,
            since=state.since,
            message=state.message,
            created_at=self.created_at,
            last_deploy_at=self.last_deploy_at,
        )

    def settings_view(self) -> SettingsView:
        """The stored settings, the active ones, and which fields wait for the next deploy."""
        record = self._record()
        active = self._active_settings()
        pending: tuple[str, ...] = ()
        if active is not None:
            pending = tuple(
                f.name
                for f in attrs.fields(ServiceSettings)
                if getattr(record.settings, f.name) != getattr(active, f.name)
            )
        live = self.releases.get(self.current) if self.current else None
        if live is not None:  # the restart policy applies at every start, not only a deploy
            others = tuple(name for name in pending if name != "restart")
            changed = record.settings.restart != live.policy
            pending = (*others, "restart") if changed else others
        return SettingsView(self.name, record.settings, active, pending, str(self.data_dir))

    def env_listing(self, applies: str = APPLIES_LATER) -> EnvListing:
        """The environment with secrets masked."""
        return EnvListing(self.name, tuple(self.store.env_listing(self.name)), applies)

    def _active_settings(self) -> ServiceSettings | None:
        active = self.state.active_deployment
        if active is None:
            return None
        deployment = self.store.get_deployment(self.name, active)
        return deployment.settings if deployment is not None else None

    def _active_deployment(self) -> Deployment:
        record = self._record()
        if record.active_deployment is None:
            raise NotDeployed(f"{self.name} has no successful deployment yet: deploy it first")
        deployment = self.store.get_deployment(self.name, record.active_deployment)
        if deployment is None:
            raise NotDeployed(f"{self.name}'s active deployment is missing: deploy again")
        return deployment

    def kept_credential(self) -> Credential | None:
        """The password kept for the service's remote, if any."""
        kept = self.store.git_credential(self.name)
        return None if kept is None else Credential(*kept)
