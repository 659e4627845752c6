"""Service users: when the daemon runs as root, each service runs as a user of its own.

Like systemd's ``DynamicUser=``, a service gets a user id of its own from a range no
account uses (:data:`FIRST_UID` … :data:`LAST_UID`, with no passwd entry), its group id
the same number, and no supplementary groups. The id is kept as the owner of the
service's data folder, so it needs no record of its own and survives a restart::

    <data dir>/                     root 0711: passable, not listable
      dployr.db, admin-token, …     root 0600: the daemon's alone
      services/                     root 0711
        <name>/                     root:<service's group> 0710: its service alone passes
          data/                     <service> 0700: its HOME, for its own files
          releases/                 root:<service's group> 0710
            <deployment>/           <service> 0700 (given to it before its first process)
          logs/, source/            root 0700 (the daemon makes all with umask 077)

So a service cannot read the daemon's keys, token or database, nor another service's
folders; and the kernel keeps every other service's ``/proc/<pid>/environ`` from it (a
process of another user). The release, build and health command of a service run as its
user; git runs as the daemon (the source cache is the daemon's).

A deleted service's id may be given to a later service: its processes are gone (its
cgroup was killed), but files it left outside its folders (in /tmp, say) would belong to
the new one, as with ``DynamicUser=``.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from typing import Final

from dployr.errors import DployrError
from dployr.models import InvalidSetting

FIRST_UID: Final = 690_000
LAST_UID: Final = 699_999
"""The ids given to services (no account on a usual machine comes near them)."""


DAEMON_UMASK: Final = 0o077
SERVICE_UMASK: Final = 0o022


class NoServiceUser(OSError):
    """Every id of the range is taken."""


_INSTANCES: dict[str, ServiceUsers] = {}


def of_instance(instance_id: str | None) -> ServiceUsers | None:
    """The service users of a running instance, if its services run as their own users."""
    return None if instance_id is None else _INSTANCES.get(instance_id)


def available() -> bool:
    """Whether services can run as users of their own: the daemon runs as root."""
    return os.geteuid() == 0


class DataDirClosed(DployrError):
    """Service users could not reach their folders in the data dir."""


def check_reachable(data_dir: Path) -> None:
    """Raise DataDirClosed unless every folder above ``data_dir`` lets others pass (a
    service user must reach its folders: root's home, 0700, does not let it)."""
    for folder in data_dir.resolve().parents:
        try:
            mode = folder.stat().st_mode
        except FileNotFoundError:
            continue  # made by the daemon, passable
        if not mode & stat.S_IXOTH:
            raise DataDirClosed(
                f"services run as users of their own, who cannot pass through {folder}"
                f" (mode {stat.S_IMODE(mode):o}) to the data dir {data_dir}: choose a"
                " --data-dir they can reach (such as /var/lib/dployr), or run them as"
                " root with --shared-user"
            )


class ServiceUsers:
    """The users of one instance's services (blocking file work: call from a worker
    thread)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.services = data_dir / "services"
        self.chosen: dict[str, tuple[int, int]] = {}
        """Service -> (uid, gid) of the user its settings name (``--user``), if they do."""

    def choose(self, service: str, user: str | None) -> None:
        """Run the service's next processes as ``user`` (None: a user of its own)."""
        if user is None:
            self.chosen.pop(service, None)
        else:
            entry = lookup(user)
            self.chosen[service] = (entry.pw_uid, entry.pw_gid)

    def open(self) -> None:
        """Close the data dir to every service: only root reads its files, and a service
        passes through to its own folder only.

        The caller also sets the daemon's umask to 077, so what it makes from then on (a
        new service's folder, its logs, a checkout) is its own until given away; service
        processes get the usual 022 back (:data:`SERVICE_UMASK`)."""
        self.services.mkdir(parents=True, exist_ok=True)
        for folder in (self.data_dir, self.services):
            os.chown(folder, 0, 0)
            folder.chmod(0o711)
        for entry in os.scandir(self.data_dir):
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, 0o600)
        for entry in os.scandir(self.services):
            if entry.is_dir(follow_symlinks=False):
                os.chmod(entry.path, 0o700)  # until its service's next start opens it

    def register(self, instance_id: str) -> None:
        """Make these the users of the processes that carry ``DPLOYR_INSTANCE``."""
        _INSTANCES[instance_id] = self

    def close(self, instance_id: str) -> None:
        """Forget the instance."""
        if _INSTANCES.get(instance_id) is self:
            del _INSTANCES[instance_id]

    def home(self, service: str) -> Path:
        """The service's own folder, its HOME."""
        return self.services / service / "data"

    def uid(self, service: str) -> int:
        """The user id of ``service``, given to it now if it has none."""
        return self.ids(service)[0]

    def ids(self, service: str) -> tuple[int, int]:
        """The user and group ids of ``service``: the user its settings chose, else its
        own (given to it now if it has none). Its folder and home are made theirs."""
        home = self.home(service)
        if service in self.chosen:
            owner, group = self.chosen[service]
        else:
            try:
                found: int | None = home.stat().st_uid
            except FileNotFoundError:
                found = None
            if found is None or not FIRST_UID <= found <= LAST_UID:
                found = self._free_uid(service)
            owner = group = found
        folder = self.services / service
        folder.mkdir(exist_ok=True)
        os.chown(folder, 0, group)
        folder.chmod(0o710)
        home.mkdir(exist_ok=True)
        os.chown(home, owner, group)
        home.chmod(0o700)
        return owner, group

    def prepare(self, service: str, cwd: Path) -> tuple[int, int]:
        """Before a process of ``service`` starts in ``cwd``: give the service its release
        folder (once: its owner says so) and return the service's user and group ids."""
        uid, gid = self.ids(service)
        releases = self.services / service / "releases"
        try:
            release = releases / cwd.relative_to(releases).parts[0]
        except (ValueError, IndexError):
            return uid, gid  # not in a release: nothing to give
        info = release.lstat()
        if info.st_uid != uid and stat.S_ISDIR(info.st_mode):
            os.chown(releases, 0, gid)
            releases.chmod(0o710)
            _chown_tree(release, uid, gid)
            release.chmod(0o700)
        return uid, gid

    def _free_uid(self, service: str) -> int:
        taken = set()
        for entry in os.scandir(self.services):
            if entry.name != service:
                try:
                    taken.add(os.stat(os.path.join(entry.path, "data")).st_uid)
                except OSError:
                    continue
        for uid in range(FIRST_UID, LAST_UID + 1):
            if uid not in taken and not _has_account(uid):
                return uid
        raise NoServiceUser(f"no free user id left in {FIRST_UID}-{LAST_UID} for {service!r}")


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Make ``uid`` own ``root`` and all in it (symlinks themselves, not their targets)."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


class UnknownUser(InvalidSetting):
    """A service's settings name a user this machine does not have, or one dployr cannot
    switch to."""


def lookup(user: str) -> pwd.struct_passwd:
    """The account ``user`` names (a name or a numeric id), or UnknownUser."""
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise UnknownUser(f"there is no user {user!r} on this machine") from None


def check_user(user: str | None) -> None:
    """Refuse a ``--user`` the daemon cannot run a service as, in one line."""
    if user is None:
        return
    entry = lookup(user)
    if not available() and entry.pw_uid != os.geteuid():
        raise UnknownUser(
            f"dployr runs as {pwd.getpwuid(os.geteuid()).pw_name}, not root: its services "
            f"run as that user, so it cannot run one as {user!r}"
        )
