"""Container services: how dployr runs podman, in one place.

A container service's release is ``podman run`` in the foreground, started by the launcher
like any run command: podman's stdout and stderr are the container's (so its log lines
are the service's), its exit code is the container's, and stopping it is the same ladder
(SIGTERM to the group, which podman passes on to the container, the grace, SIGKILL).
Each container is run with:

- ``--network=host``: the container listens on the private loopback port given as
  ``PORT`` like a process does, the proxy switches to it, and no network namespace is
  made (so none can be left behind);
- ``--init``: a small init (catatonit) is the container's pid 1 and passes SIGTERM on to
  the command (a program that is pid 1 ignores it otherwise);
- ``--ulimit nofile=…,nproc=…`` at the daemon's own limits (nproc no higher than the
  kernel's ``pid_max``): podman asks for far higher ones by default, which runc may not
  set inside a container or an unprivileged namespace ("error setting rlimit type 7:
  operation not permitted"; type 6, nproc, above ``pid_max``);
- the service's variables and secrets named with ``-e NAME`` and their values in
  podman's environment, so no value appears in a process list;
- the service's data folder mounted at :data:`DATA_PATH` (``DPLOYR_DATA_DIR`` says so);
  when services run as users of their own, the container runs as that user;
- labels naming the instance and the service, so the containers a killed daemon left
  are found and removed when it starts again (:func:`remove_leftovers`), and a name of
  its own, so the container is removed once the release ends even when podman itself
  was killed (:func:`remove`).

podman itself runs with the ``cgroupfs`` cgroup manager and the ``file`` events logger
(:data:`GLOBAL_FLAGS`): dployr needs neither systemd nor journald.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import resource
import shlex
import shutil
import tempfile
import tomllib
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import attrs
import trio

from dployr.engine.os import launcher
from dployr.engine.release import ReleaseSpec
from dployr.engine.sources import Credential
from dployr.errors import DployrError
from dployr.models import PODMAN_OWN_ENV

PODMAN = "podman"
PACKAGES = "podman runc"
"""What to install (Debian's packages) when podman is missing."""
GLOBAL_FLAGS = ("--cgroup-manager=cgroupfs", "--events-backend=file")
"""podman's own options on every call: no systemd, no journald needed."""
DATA_PATH = "/data"
"""Where a container finds the service's persistent data folder."""
ARCHIVES = ("oci-archive:", "docker-archive:")
PODMAN_ENV = tuple(sorted(PODMAN_OWN_ENV))
"""The daemon's variables podman is given (its own configuration), when the daemon has them."""
LABEL_INSTANCE = "dployr.instance"
LABEL_SERVICE = "dployr.service"
STORAGE_CONFS = (Path("/etc/containers/storage.conf"), Path("/usr/share/containers/storage.conf"))
"""containers/storage's configuration files, the first found wins (after the user's own
when rootless, or ``CONTAINERS_STORAGE_CONF`` alone)."""
QUICK_TIMEOUT = 60.0
"""Seconds an inspect or a removal may take."""


class PodmanMissing(DployrError):
    """podman is not installed."""


class PodmanFailed(DployrError):
    """A podman command failed; the message is its last line of error output."""


def require() -> str:
    """The path of podman, or :class:`PodmanMissing` saying what to install."""
    path = shutil.which(PODMAN)
    if path is None:
        raise PodmanMissing(
            f"podman is not installed: container services need it "
            f"(on Debian: apt-get install {PACKAGES})"
        )
    return path


def podman_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a podman command: its own configuration from the daemon's."""
    env = {name: os.environ[name] for name in PODMAN_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("HOME", "/")
    if extra:
        env.update(extra)
    return env


def argv(*words: str) -> list[str]:
    """A podman command line with dployr's global options."""
    return [PODMAN, *GLOBAL_FLAGS, *words]


def is_archive(ref: str) -> bool:
    """Whether ``ref`` names an image archive on the daemon's machine."""
    return ref.startswith(ARCHIVES)


def registry_of(ref: str) -> str | None:
    """The registry host of a reference (None for an archive or a short name)."""
    if is_archive(ref):
        return None
    first = ref.split("/", 1)[0]
    if "/" not in ref or not ("." in first or ":" in first or first == "localhost"):
        return None
    return first


def insecure(ref: str) -> bool:
    """Whether ``ref`` is on a loopback registry, reached over plain HTTP as Docker does."""
    host = registry_of(ref)
    if host is None:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def tls_flags(ref: str) -> list[str]:
    """``--tls-verify=false`` for a loopback registry, else nothing."""
    return ["--tls-verify=false"] if insecure(ref) else []


def repository(ref: str) -> str:
    """A registry reference without its tag or digest: ``host:5000/team/api``."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def pinned(ref: str, digest: str, image_id: str) -> str:
    """What a deployment records: ``repository@digest`` for a registry image (pulled again
    by digest if it is gone), the image's id for an archive."""
    if is_archive(ref) or not digest:
        return image_id
    return f"{repository(ref)}@{digest}"


async def run_quick(*words: str, check: bool = True) -> str:
    """Run a short podman command (inspect, rm); its stdout, or :class:`PodmanFailed`."""
    require()
    out: list[bytes] = []
    err: list[bytes] = []
    with trio.fail_after(QUICK_TIMEOUT):
        code = await launcher.run(
            launcher.Program(argv(*words), podman_env(), label="podman"),
            on_stdout=out.append,
            on_stderr=err.append,
        )
    if check and code != 0:
        raise PodmanFailed(last_line(b"".join(err)) or f"podman {words[0]} failed")
    return b"".join(out).decode(errors="replace")


def last_line(output: bytes) -> str:
    """The last non-blank line of podman's error output, without its ``Error:``."""
    lines = [line.strip() for line in output.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    line = lines[-1]
    return line[len("Error: ") :] if line.startswith("Error: ") else line


async def inspect_image(ref: str) -> tuple[str, str]:
    """The id and the manifest digest of an image in podman's store (the first it was
    known by, when it has several)."""
    out = await run_quick("image", "inspect", "--format", "{{.Id}} {{.Digest}}", ref)
    image_id, _, digest = out.strip().partition(" ")
    return image_id, digest


def digest_of(ref: str) -> str | None:
    """The digest a reference names (``host/team/api@sha256:…``), if it names one."""
    _, at, digest = ref.partition("@")
    return digest if at and digest.startswith("sha256:") and not is_archive(ref) else None


def in_store(ref: str) -> bool:
    """Whether podman's store holds an image under the exact name ``ref``
    (``repository@sha256:…``, as podman names an image pulled by digest).

    Read from the store's image index, a file podman replaces whole on every change, so
    that a deploy of an image already there starts no podman process to find out (one
    costs ~50 ms here). False when the index cannot be read (another storage driver or
    place): the caller asks podman then.
    """
    index = image_index()
    if index is None:
        return False
    try:
        images = json.loads(index.read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(images, list):
        return False
    return any(isinstance(image, dict) and ref in (image.get("names") or ()) for image in images)


def image_index() -> Path | None:
    """The image index of podman's store (``<graphroot>/<driver>-images/images.json``):
    where containers' ``storage.conf`` puts it, or its default place."""
    rootless = os.getuid() != 0
    conf: dict[str, object] = {}
    for path in _storage_confs(rootless):
        try:
            with path.open("rb") as file:
                found = tomllib.load(file).get("storage", {})
        except (OSError, tomllib.TOMLDecodeError):
            continue
        conf = found if isinstance(found, dict) else {}
        break
    root = conf.get("rootless_storage_path" if rootless else "graphroot")
    if isinstance(root, str):  # (containers/storage expands these in its paths)
        root = os.path.expandvars(root.replace("$UID", str(os.getuid())))
    if not isinstance(root, str) or not root:
        data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        root = f"{data}/containers/storage" if rootless else "/var/lib/containers/storage"
    driver = conf.get("driver")
    drivers = [driver] if isinstance(driver, str) and driver else ["overlay", "vfs"]
    for name in drivers:
        index = Path(root) / f"{name}-images" / "images.json"
        if index.is_file():
            return index
    return None


def _storage_confs(rootless: bool) -> list[Path]:
    """Where containers/storage reads its configuration, the first found wins."""
    if "CONTAINERS_STORAGE_CONF" in os.environ:
        return [Path(os.environ["CONTAINERS_STORAGE_CONF"])]
    paths = []
    if rootless:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        paths.append(Path(config) / "containers" / "storage.conf")
    return [*paths, *STORAGE_CONFS]


async def find_image(ref: str) -> tuple[str, str] | None:
    """The id and digest of ``ref`` if podman's store holds it, else None."""
    try:
        return await inspect_image(ref)
    except PodmanFailed:
        return None


@contextlib.contextmanager
def auth_file(credential: Credential | None) -> Iterator[Path | None]:
    """A registry credential as podman's auth file, for the length of one pull.

    The credential is the service's sealed remote password (``--registry
    https://user:TOKEN@host``, kept as a git password is); the file, in a folder of its
    own that only the daemon's user can read, is removed afterwards. The token is never
    on a command line, in a log or in the API.
    """
    if credential is None:
        yield None
        return
    url = urllib.parse.urlsplit(credential.remote)
    host = url.hostname or ""
    if url.port is not None:
        host = f"{host}:{url.port}"
    user = urllib.parse.unquote(url.username or "")
    token = urllib.parse.unquote(credential.password)
    auth = base64.b64encode(f"{user}:{token}".encode()).decode()
    folder = Path(tempfile.mkdtemp(prefix="dployr-registry-"))
    try:
        path = folder / "auth.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"auths": {host: {"auth": auth}}}, out)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def container_name(instance: str, service: str, child_id: str) -> str:
    """The container of one release: ``dployr-<instance>-<service>-7.1``."""
    return f"dployr-{instance}-{service}-{child_id.removeprefix('release-')}"


def run_command(
    *,
    name: str,
    instance: str,
    service: str,
    deployment: int,
    image: str,
    command: str,
    names: Iterable[str],
    data_dir: Path,
    grace: float,
    pidfile: Path | None = None,
) -> str:
    """The ``podman run`` command line of a release (values of ``names`` come from
    podman's environment, never from its arguments)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = _capped(resource.getrlimit(resource.RLIMIT_NPROC), _pid_max())
    words = argv(
        "run",
        "--rm",
        "--init",
        "--network=host",
        f"--name={name}",
        f"--label={LABEL_INSTANCE}={instance}",
        f"--label={LABEL_SERVICE}={service}",
        f"--ulimit=nofile={_limit(nofile[0])}:{_limit(nofile[1])}",
        f"--ulimit=nproc={_limit(nproc[0])}:{_limit(nproc[1])}",
        f"--stop-timeout={max(1, round(grace))}",
        f"--volume={data_dir}:{DATA_PATH}",
        *([f"--pidfile={pidfile}"] if pidfile is not None else []),
        f"--env=DPLOYR_SERVICE={service}",
        f"--env=DPLOYR_DEPLOYMENT={deployment}",
        f"--env=DPLOYR_DATA_DIR={DATA_PATH}",
        *tls_flags(image),
    )
    owner = data_dir.stat().st_uid if data_dir.exists() else 0
    if owner != 0 and owner != os.getuid():
        words.append(f"--user={owner}:{data_dir.stat().st_gid}")
    words += [f"--env={key}" for key in sorted(set(names))]
    words.append(image)
    if command:
        words += shlex.split(command)
    return shlex.join(words)


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 32768


def _capped(limits: tuple[int, int], cap: int) -> tuple[int, int]:
    """A limit no higher than ``cap`` (runc refuses an nproc limit above pid_max here)."""
    soft, hard = (cap if v == resource.RLIM_INFINITY else min(v, cap) for v in limits)
    return soft, hard


def _limit(value: int) -> str:
    return "-1" if value == resource.RLIM_INFINITY else str(value)


def release_env(env: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """podman's environment for a release: its configuration, the values it passes on by
    name, and ``DPLOYR_INSTANCE`` (which marks it, and its cgroup, as the instance's)."""
    own = podman_env({name: env[name] for name in names if name in env})
    if "DPLOYR_INSTANCE" in env:
        own["DPLOYR_INSTANCE"] = env["DPLOYR_INSTANCE"]
    return own


async def remove(name: str, returncode: int | None) -> None:
    """Remove a release's container if podman was killed before it could (``--rm`` did it
    if podman exited by itself)."""
    if returncode is not None and returncode >= 0:
        return
    await run_quick("rm", "--force", "--ignore", "--time=0", name, check=False)


async def remove_leftovers(instance: str) -> list[str]:
    """Remove every container of this instance (a killed daemon's); return their names.

    A podman that fails here does not keep the daemon from starting: nothing is removed."""
    if shutil.which(PODMAN) is None:
        return []
    try:
        out = await run_quick(
            "ps", "--all", "--filter", f"label={LABEL_INSTANCE}={instance}",
            "--format", "{{.Names}}",
        )  # fmt: skip
    except (PodmanFailed, trio.TooSlowError):
        return []
    names = out.split()
    if names:
        await run_quick("rm", "--force", "--ignore", "--time=0", *names, check=False)
    return names


async def remove_images(images: Iterable[str]) -> list[str]:
    """Remove these images (references or ids) from podman's store, with every tag they
    have, unless a container uses them; return the ones removed."""
    removed = []
    for image in dict.fromkeys(images):
        try:
            image_id, _ = await inspect_image(image)
        except PodmanFailed:
            continue  # gone already
        users = await run_quick(
            "ps", "--all", "--quiet", "--filter", f"ancestor={image_id}", check=False
        )
        if users.strip():
            continue
        try:
            await run_quick("rmi", "--force", image_id)
        except PodmanFailed:
            continue
        removed.append(image)
    return removed


def release_spec(spec: ReleaseSpec, image: str, instance: str, names: Iterable[str]) -> ReleaseSpec:
    """A release of a container service: ``spec`` (made as for a process) run as
    ``podman run`` of ``image``, with the service's variables ``names`` passed on."""
    passed = {*names, "DPLOYR_INSTANCE"} | ({"PORT"} if spec.port is not None else set())
    name = container_name(instance, spec.service, spec.child_id)
    data_dir = Path(spec.env["DPLOYR_DATA_DIR"])
    pid_path = pidfile(data_dir.parent, spec.child_id)
    pid_path.parent.mkdir(exist_ok=True)
    pid_path.unlink(missing_ok=True)
    command = run_command(
        name=name,
        instance=instance,
        service=spec.service,
        deployment=spec.deployment,
        image=image,
        command=spec.command,
        names=passed,
        data_dir=data_dir,
        grace=spec.grace,
        pidfile=pid_path,
    )

    async def cleanup(returncode: int | None) -> None:
        pid_path.unlink(missing_ok=True)  # its pid may be another process's from now on
        await remove(name, returncode)

    return attrs.evolve(
        spec,
        command=command,
        env=release_env(spec.env, passed),
        cleanup=cleanup,
        moves_out=True,  # podman puts conmon and the container in cgroups of its own
    )


def pidfile(service_dir: Path, child_id: str) -> Path:
    """Where podman writes the host pid of a release's container init (``--pidfile``)."""
    return service_dir / "containers" / f"{child_id}.pid"


def container_groups(path: Path) -> list[int]:
    """The process groups of a running container, for its metrics: its init's (whose pid
    ``path`` holds) and those of the init's children (the init runs its command in a group
    of its own). Empty while the container is not running."""
    try:
        init = int(path.read_text())
        children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
        groups = [os.getpgid(init)]
        for child in children:
            with contextlib.suppress(OSError):
                groups.append(os.getpgid(int(child)))
    except (OSError, ValueError):
        return []
    return groups
