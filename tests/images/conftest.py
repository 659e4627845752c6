"""Container images for the tests, made here: nothing is downloaded.

A registry on loopback (Debian's ``docker-registry``, with a configuration of its own in
a temporary folder) holds images built in the test run FROM scratch: busybox-static's
``httpd`` serving a version file on ``$PORT``. The registry and its images are made once
per test run, by the first test process that needs them, and shared by the others (xdist's
workers): the last one out stops the registry and removes the images (:func:`registry`).

podman's store is the machine's, shared by every test process and by anyone else on the
machine, so nothing here may touch what another run made:

- every build context holds a file of its own (:func:`image_context`): podman's layer
  cache would otherwise give the same image (one id, several names) to two runs building
  the same files, and one run's clean-up or ``--purge-image`` would remove the other's;
- a test that builds from a Dockerfile names its service with :func:`own_name` (dployr
  tags a build ``localhost/dployr/<service>:<deployment>``, a name every instance on the
  machine shares);
- the clean-up removes this run's images by id (every name they got: tags, pulls by
  digest, the credentials test's second registry);
- the shared images are removed by no test: a test that removes an image (``images
  prune``, ``--purge-image``, ``podman rmi``) removes one of its own (:func:`push_own`),
  as another worker may be running a container of a shared one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import attrs
import psutil
import pytest

from dployr.engine import podman
from tests.cli.conftest import daemon  # noqa: F401 (the CLI tests' daemon fixture)

BUSYBOX = Path("/usr/bin/busybox")
REGISTRY = Path("/usr/bin/docker-registry")
WAIT = 60.0

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY www /www
ENTRYPOINT ["/bin/busybox", "sh", "-c", "{script}", "sh"]
"""
SERVE = (
    "echo serving $(/bin/busybox cat /www/version) on $PORT;"
    " echo to stderr >&2;"
    " exec /bin/busybox httpd -f -p $PORT -h /www"
)

STUBBORN = "trap '' TERM; exec /bin/busybox httpd -f -p $PORT -h /www"
"""A server that ignores SIGTERM (an ignored signal stays ignored across exec)."""


def podman_cmd(*words: str, capture: bool = False) -> str:
    """Run podman as dployr does (its global options); its stdout."""
    done = subprocess.run(
        podman.argv(*words),
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture else None,
        timeout=WAIT,
    )
    return done.stdout.decode()


def image_context(folder: Path, version: str, script: str = SERVE) -> Path:
    """A build context: busybox, a version file, and a Dockerfile running ``script``.

    A file of its own (``www/build``) makes its image this context's alone."""
    (folder / "www").mkdir(parents=True)
    shutil.copy(BUSYBOX, folder / "busybox")
    (folder / "www" / "version").write_text(version + "\n")
    (folder / "www" / "build").write_text(f"{os.environ['TESTS_RUN']} {os.urandom(8).hex()}\n")
    (folder / "Dockerfile").write_text(DOCKERFILE.format(script=script))
    return folder


def own_name(service: str) -> str:
    """A service name no other test run on the machine uses: ``built-3fa9c1``."""
    return f"{service}-{os.urandom(3).hex()}"


@attrs.frozen
class Registry:
    """A registry on loopback and the images pushed to it."""

    host: str
    """``127.0.0.1:PORT``."""
    repo: str
    """The test run's repository on it: ``127.0.0.1:PORT/dployr-tests/web``."""
    digests: dict[str, str]
    """The digest of each version's image (v1, v2, crash, stubborn)."""
    archive: Path
    """v1 as an OCI archive."""

    def push(self, version: str, tag: str) -> None:
        """Point ``tag`` of the repository at ``version``'s image (as ``podman push`` of a
        pulled image would)."""
        pinned = f"{self.repo}@{self.digests[version]}"
        podman_cmd("pull", "--quiet", "--tls-verify=false", pinned)
        podman_cmd("push", "--quiet", "--tls-verify=false", pinned, f"{self.repo}:{tag}")


def push_own(registry: Registry, folder: Path, version: str, tag: str) -> tuple[str, str]:
    """Build an image of a test's own (its files: :func:`image_context`) and push it to
    ``tag`` of the repository; its digest and its id. Only the registry holds it then, as
    the shared ones: the test removes it (by id, with every name it got)."""
    context = image_context(folder, version)
    image_id = podman_cmd("build", "--quiet", "--layers=false", str(context), capture=True)
    image_id = image_id.strip()
    digest_file = folder / "digest"
    try:
        podman_cmd("push", "--quiet", "--tls-verify=false", "--digestfile", str(digest_file),
                   image_id, f"{registry.repo}:{tag}")  # fmt: skip
    finally:
        podman_cmd("rmi", "--force", "--ignore", image_id, capture=True)
    return digest_file.read_text().strip(), image_id


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A loopback registry holding v1, v2 and a crashing image of the test web app.

    One per test run: xdist's workers share the run's temporary folder (each has a folder
    of its own in it), where the first one in starts the registry and builds the images
    and the others find them (``shared.json``, under a lock). Each worker that uses them
    signs in with its pid; the last one out (a worker that died is counted out) stops the
    registry and removes the images.
    """
    if shutil.which("podman") is None or not REGISTRY.exists() or not BUSYBOX.exists():
        pytest.fail(f"the image tests need: apt-get install {podman.PACKAGES} {PACKAGES}")
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "registry"
    root.mkdir(exist_ok=True)
    with _shared(root) as state:
        if not state:
            state.update(_start_registry(root))
        state["users"] = [*_live(state.get("users", [])), os.getpid()]
        made = Registry(state["host"], state["repo"], state["digests"], Path(state["archive"]))
    try:
        yield made
    finally:
        with _shared(root) as state:
            state["users"] = [pid for pid in _live(state["users"]) if pid != os.getpid()]
            if not state["users"]:
                _stop_registry(state)
                state.clear()


@contextlib.contextmanager
def _shared(root: Path) -> Iterator[dict[str, Any]]:
    """The run's registry as ``shared.json`` says (empty: none runs), under a lock; what
    the block leaves in it is written back."""
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = root / "shared.json"
        state = json.loads(path.read_text()) if path.exists() else {}
        yield state
        if state:
            path.write_text(json.dumps(state))
        else:
            path.unlink(missing_ok=True)


def _live(pids: list[int]) -> list[int]:
    """The processes of ``pids`` that still run."""
    return [pid for pid in pids if psutil.pid_exists(pid)]


def _start_registry(root: Path) -> dict[str, Any]:
    """Start a registry in ``root`` and push the images to it; what ``shared.json`` keeps."""
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "http:\n  addr: 127.0.0.1:0\n"
        "log:\n  level: info\n"
    )
    pid, drain, host = _spawn_registry(config, root / "registry.log")
    state: dict[str, Any] = {"pid": pid, "drain": drain, "built": []}
    try:
        repo = f"{host}/dployr-tests/web"
        digests: dict[str, str] = {}
        for version, script in (
            ("v1", SERVE),
            ("v2", SERVE),
            ("crash", "echo boom >&2; exit 3"),
            ("stubborn", STUBBORN),
        ):
            context = image_context(root / f"build-{version}", version, script)
            # No layer cache: nothing of another run's build is reused, nothing left behind.
            image_id = podman_cmd(
                "build", "--quiet", "--layers=false", str(context), capture=True
            ).strip()
            state["built"].append(image_id)
            digest_file = root / f"{version}.digest"
            podman_cmd(
                "push", "--quiet", "--tls-verify=false", "--digestfile", str(digest_file),
                image_id, f"{repo}:{version}",
            )  # fmt: skip
            digests[version] = digest_file.read_text().strip()
        archive = root / "v1.oci.tar"
        podman_cmd("save", "--quiet", "--format", "oci-archive", "--output", str(archive),
                   state["built"][0])  # fmt: skip
        # Only the registry holds them now: a deploy pulls them as from any registry.
        podman_cmd("rmi", *state["built"], capture=True)
    except BaseException:
        _stop_registry(state)
        raise
    return {**state, "host": host, "repo": repo, "digests": digests, "archive": str(archive)}


def _stop_registry(state: dict[str, Any]) -> None:
    """Stop the registry (started by this process or another worker) and remove the
    run's images."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(state["pid"], signal.SIGTERM)
    for pid in (state["pid"], state["drain"]):  # (`cat` ends with the registry's log)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # reaped, if this process started it
    # A pull (by tag, by digest, from the archive or the second registry) gives back
    # the same image, with its id: removing the ids removes every name they got.
    if state["built"]:
        subprocess.run(
            podman.argv("rmi", "--force", "--ignore", *state["built"]),
            check=False, capture_output=True, timeout=WAIT,
        )  # fmt: skip


PACKAGES = "docker-registry busybox-static"


def _drain(stream: IO[bytes], log: Path) -> None:
    with stream, log.open("ab") as out:
        shutil.copyfileobj(stream, out)


def _listening(process: subprocess.Popen[bytes], log: Path) -> str:
    """Read the registry's log until it says where it listens (it picks a free port)."""
    assert process.stderr is not None
    deadline = time.monotonic() + WAIT
    seen = []
    for raw in process.stderr:
        line = raw.decode(errors="replace")
        seen.append(line)
        if "listening on" in line:
            # The rest of its log is drained to a file, so the pipe never fills.
            threading.Thread(target=_drain, args=(process.stderr, log), daemon=True).start()
            # (the thread closes the pipe at its end)
            return line.split("listening on ", 1)[1].split()[0].strip('"')
        assert time.monotonic() < deadline, "".join(seen)
    log.write_text("".join(seen))
    process.stderr.close()
    raise AssertionError(f"the registry did not start: {''.join(seen)}")


def _spawn_registry(config: Path, log: Path) -> tuple[int, int, str]:
    """Start a registry that may outlive this process (other workers use it): its pid,
    the pid of the ``cat`` that drains its log to ``log`` once it listens, and where it
    listens. Spawned without a Popen (which would warn when dropped while it runs)."""
    read, write = os.pipe()
    try:
        pid = os.posix_spawn(
            REGISTRY,
            [str(REGISTRY), "serve", str(config)],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, write, 2),
            ],
        )
    finally:
        os.close(write)
    try:
        address = _address(read, log)
        # The rest of its log is drained to a file, so the pipe never fills.
        drain = os.posix_spawn(
            "/bin/cat",
            ["cat"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            ],
        )
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read)
    return pid, drain, address


def _address(stderr: int, log: Path) -> str:
    """Read the registry's log (an unbuffered pipe) up to the line that says where it
    listens, and not a byte further; where that is."""
    seen = []
    with open(stderr, "rb", buffering=0, closefd=False) as lines:
        for raw in lines:  # (a raw file's lines are read a byte at a time: none read ahead)
            line = raw.decode(errors="replace")
            seen.append(line)
            if "listening on" in line:
                return line.split("listening on ", 1)[1].split()[0].strip('"')
    log.write_text("".join(seen))
    raise AssertionError(f"the registry did not start: {''.join(seen)}")
