"""Deploying container images with the real CLI, daemon, podman and a loopback registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import trio
from trio_websocket import open_websocket_url

from dployr.engine import podman
from tests.cli.conftest import WAIT, Daemon, free_port, http_get
from tests.cli.test_restarts import next_status
from tests.helpers import git
from tests.images.conftest import Registry, image_context, own_name, podman_cmd, push_own

# podman's store is the machine's: each test keeps to images and names of its own (see
# tests/images/conftest.py), so these run beside the rest of the suite.
pytestmark = pytest.mark.slow

UP = ("--min-uptime", "0.3")


async def instance_id(daemon: Daemon) -> str:
    async with daemon.http() as http:
        return str((await http.get("/instances")).json()[0]["id"])


def containers_of(instance: str) -> list[str]:
    """The containers dployr made for an instance, running or not."""
    out = podman_cmd("ps", "--all", "--filter", f"label=dployr.instance={instance}",
                     "--format", "{{.Names}}")  # fmt: skip
    return out.split()


def conmons_of(instance: str) -> list[int]:
    """Live (not zombie) conmon processes of an instance's containers."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        if process.info["name"] != "conmon" or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(instance in word for word in process.info["cmdline"] or ()):
            found.append(process.pid)
    return found


async def none_left(instance: str, part: str) -> None:
    """Wait until no container of ``instance`` has ``part`` in its name: at each removal
    podman reports (its events since just before each look), look again. A release's
    container that crashed and was restarted under the same name is removed twice, the
    second time possibly after ``podman run --rm`` of the first has returned."""
    with trio.fail_after(WAIT):
        while True:
            since = f"{time.time() - 0.1:.9f}"  # a little before the look below
            words = ("events", "--since", since, "--filter", f"label=dployr.instance={instance}",
                     "--filter", "event=remove", "--format", "{{.Name}}")  # fmt: skip
            events = await trio.lowlevel.open_process(
                podman.argv(*words), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
            )
            try:
                if not [name for name in containers_of(instance) if part in name]:
                    return
                assert events.stdout is not None
                assert await events.stdout.receive_some(), "podman events ended"
            finally:
                events.kill()
                await events.wait()
            assert events.stdout is not None
            await events.stdout.aclose()


def netns_left() -> list[str]:
    """Network namespaces podman names (none is made: containers share the host's)."""
    return sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []


def container_pids(instance: str, service: str) -> list[int]:
    """The pids of processes inside a service's containers (they carry its marks)."""
    pids = []
    for process in psutil.process_iter():
        try:
            env = process.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        marks = (env.get(k) for k in ("DPLOYR_INSTANCE", "DPLOYR_SERVICE", "DPLOYR_DATA_DIR"))
        if tuple(marks) == (instance, service, "/data"):
            pids.append(process.pid)
    return pids


async def test_deploy_by_tag_serves_the_image_and_its_output_is_the_log(
    daemon: Daemon, registry: Registry
) -> None:
    port = free_port()
    out = await daemon.ok(
        "deploy", "--name", "web", "--image", f"{registry.repo}:v1", "--port", str(port), *UP,
        "--env", "GREETING=hi", "--secret", "TOKEN=s3cret-value",
    )  # fmt: skip
    assert "Copying blob" in out, out  # the pull's progress
    assert await http_get(port, "/version") == "v1\n"
    logs = await daemon.ok("logs", "web")
    assert "serving v1 on " in logs, logs
    assert "to stderr" in logs, logs
    listing = await daemon.ok("deployments", "web")
    assert registry.digests["v1"].removeprefix("sha256:")[:5] in listing, listing
    async with daemon.http() as http:
        (deployment,) = (await http.get("/services/web/deployments")).json()
    assert deployment["image"] == f"{registry.repo}@{registry.digests['v1']}", deployment
    instance = await instance_id(daemon)
    # The variables reach the container; no value shows in a process list.
    pids = container_pids(instance, "web")
    assert pids, "no process of the container carries the service's variables"
    env = psutil.Process(pids[0]).environ()
    assert env["GREETING"] == "hi", env
    assert env["TOKEN"] == "s3cret-value", env
    listing_ps = (await trio.run_process(["ps", "-eo", "args"], capture_stdout=True)).stdout
    assert b"s3cret-value" not in listing_ps
    assert b"GREETING=hi" not in listing_ps
    # Stop and delete leave no container, conmon or network namespace.
    assert len(containers_of(instance)) == 1
    await daemon.ok("service", "stop", "web")
    assert containers_of(instance) == []
    assert conmons_of(instance) == []
    await daemon.ok("service", "start", "web")
    assert await http_get(port, "/version") == "v1\n"
    await daemon.ok("delete", "web", "--yes")
    assert containers_of(instance) == []
    assert conmons_of(instance) == []
    assert netns_left() == []
    # The image stays in podman's store.
    podman_cmd("image", "exists", f"{registry.repo}@{registry.digests['v1']}")


async def test_by_digest_and_from_an_oci_archive(daemon: Daemon, registry: Registry) -> None:
    port = free_port()
    ref = f"{registry.repo}@{registry.digests['v2']}"
    await daemon.ok("deploy", "--name", "pinned", "--image", ref, "--port", str(port), *UP)
    assert await http_get(port, "/version") == "v2\n"
    other = free_port()
    await daemon.ok(
        "deploy", "--name", "archived", "--image", f"oci-archive:{registry.archive}",
        "--port", str(other), *UP,
    )  # fmt: skip
    assert await http_get(other, "/version") == "v1\n"


async def test_a_deploy_by_digest_records_that_digest_and_finds_it_in_the_store(
    daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    # The same image pushed again in another manifest format has a second digest: podman's
    # store knows it by both once both were pulled, its own digest being the first. (An
    # image of the test's own: it is removed at the end.)
    digest, image_id = push_own(
        registry, tmp_path / "image", "again", f"again-{os.urandom(3).hex()}"
    )
    first = f"{registry.repo}@{digest}"
    try:
        podman_cmd("pull", "--quiet", "--tls-verify=false", first)
        digest_file = tmp_path / "digest"
        podman_cmd("push", "--quiet", "--tls-verify=false", "--format", "v2s2", "--digestfile",
                   str(digest_file), first, f"{registry.repo}:v1-again")  # fmt: skip
        again = f"{registry.repo}@{digest_file.read_text().strip()}"
        assert again != first
        assert not podman.in_store(again)  # not pulled by that name yet
        port = free_port()
        out = await daemon.ok("deploy", "--name", "again", "--image", again, "--port", str(port),
                              *UP)  # fmt: skip
        assert "Copying" in out, out  # pulled
        assert podman.in_store(again)
        async with daemon.http() as http:
            (deployment,) = (await http.get("/services/again/deployments")).json()
        assert deployment["image"] == again, deployment
        # Deployed again, it is found in the store (no pull), and runs.
        out = await daemon.ok("deploy", "--name", "again", "--port", str(port), *UP)
        assert "is in podman's store already" in out, out
        assert await http_get(port, "/version") == "again\n"
        await daemon.ok("delete", "again", "--yes")
    finally:
        podman_cmd("rmi", "--force", "--ignore", image_id, capture=True)


async def test_a_crash_restarts_the_container_and_crash_output_is_logged(
    daemon: Daemon, registry: Registry
) -> None:
    port = free_port()
    await daemon.ok("deploy", "--name", "web", "--image", f"{registry.repo}:v1",
                    "--port", str(port), *UP)  # fmt: skip
    instance = await instance_id(daemon)
    (httpd,) = [
        pid for pid in container_pids(instance, "web") if "httpd" in psutil.Process(pid).cmdline()
    ]
    feed_url = daemon.url.replace("http://", "ws://") + f"/api/v1/events?token={daemon.token}"
    async with open_websocket_url(feed_url) as feed:
        os.kill(httpd, signal.SIGKILL)
        assert [await next_status(feed, "web") for _ in range(2)] == ["restarting", "running"]
    logs = await daemon.ok("logs", "web")
    assert logs.count("serving v1 on") == 2, logs
    assert "killed by signal" in logs or "exited with code" in logs, logs
    assert await http_get(port, "/version") == "v1\n"
    assert len(containers_of(instance)) == 1

    failed = await daemon.cli("deploy", "--name", "crasher", "--image", f"{registry.repo}:crash",
                              "--port", str(free_port()), *UP)  # fmt: skip
    assert failed.code == 1
    assert "boom" in failed.out + failed.err, failed
    # Its container goes (podman run --rm): its removal may still be under way.
    await none_left(instance, "-crasher-")
    assert [c for c in containers_of(instance) if "-web-" not in c] == []


async def test_a_dockerfile_in_a_git_repository_is_built_and_run(
    daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    del registry  # (only its packages: busybox-static's binary is copied into the image)
    repo = image_context(tmp_path / "app", "built")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "an image from a Dockerfile")
    port = free_port()
    built = own_name("built")
    out = await daemon.ok("deploy", "--name", built, "--remote", str(repo),
                          "--dockerfile", "Dockerfile", "--port", str(port), *UP)  # fmt: skip
    assert "building Dockerfile with podman" in out, out
    assert f"COMMIT localhost/dployr/{built}:1" in out, out  # podman build's output
    assert await http_get(port, "/version") == "built\n"
    await daemon.ok("delete", built, "--yes", "--purge-image")


async def test_build_args_and_secrets_reach_the_dockerfile_never_the_log(
    daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    del registry  # (only its packages: busybox-static's binary is copied into the image)
    repo = image_context(tmp_path / "app", "built")
    dockerfile = (repo / "Dockerfile").read_text().splitlines()
    dockerfile[3:3] = [
        "ARG GREETING",
        "ARG TOKEN",
        'RUN ["/bin/busybox", "sh", "-c", "echo $GREETING > /www/greeting;'
        ' echo ${#TOKEN} > /www/token"]',
    ]
    (repo / "Dockerfile").write_text("\n".join(dockerfile) + "\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "an image with build args")
    port = free_port()
    name = own_name("args")
    out = await daemon.ok(
        "deploy", "--name", name, "--remote", str(repo), "--dockerfile", "Dockerfile",
        "--build-arg", "GREETING=hello there", "--secret", "TOKEN=s3cret-value",
        "--port", str(port), *UP,
    )  # fmt: skip
    assert "s3cret-value" not in out, out
    assert await http_get(port, "/greeting") == "hello there\n"
    assert await http_get(port, "/token") == f"{len('s3cret-value')}\n"
    logs = await daemon.ok("logs", name, "--tail", "1000")
    assert "RUN " in logs, logs  # the build's output is there
    assert "s3cret-value" not in logs, logs
    assert "build-args   GREETING=hello there" in await daemon.ok("settings", name)
    # A build arg named as a variable podman reads is refused, in one line.
    failed = await daemon.cli("deploy", "--name", name, "--build-arg", "PATH=/nowhere")
    assert failed.code != 0
    assert "build arg PATH is a name podman itself reads" in failed.one_line_error()
    await daemon.ok("delete", name, "--yes", "--purge-image")


async def test_a_daemon_killed_leaves_containers_that_its_next_start_removes(
    tmp_path: Path, registry: Registry
) -> None:
    up = await Daemon.start(tmp_path / "data")
    port = free_port()
    try:
        await up.ok("deploy", "--name", "web", "--image", f"{registry.repo}:v1",
                    "--port", str(port), *UP)  # fmt: skip
        instance = await instance_id(up)
        (before,) = podman_cmd("ps", "--all", "--quiet", "--no-trunc", "--filter",
                               f"label=dployr.instance={instance}").split()  # fmt: skip
    finally:
        up.process.kill()
        with trio.fail_after(WAIT):
            await up.process.wait()
        assert up.process.stdout is not None
        await up.process.stdout.aclose()
    again = await Daemon.start(tmp_path / "data")
    try:
        assert await http_get(port, "/version") == "v1\n"
        now = podman_cmd("ps", "--all", "--quiet", "--no-trunc", "--filter",
                         f"label=dployr.instance={instance}").split()  # fmt: skip
        assert len(now) == 1
        assert now != [before]  # the leftover was removed, and a new one runs
    finally:
        code, _ = await again.stop()
    assert code == 0
    assert containers_of(instance) == []
    assert conmons_of(instance) == []


async def test_delete_keeps_the_image_unless_purge_image_and_prune_removes_unkept_ones(
    daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    port = free_port()
    await daemon.ok("deploy", "--name", "kept", "--image", f"{registry.repo}:v2",
                    "--port", str(port), *UP)  # fmt: skip
    pinned = f"{registry.repo}@{registry.digests['v2']}"
    await daemon.ok("delete", "kept", "--yes")
    podman_cmd("image", "exists", pinned)  # a plain delete keeps the image

    repo = image_context(tmp_path / "app", "built")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "an image from a Dockerfile")
    built = own_name("built")
    await daemon.ok("deploy", "--name", built, "--remote", str(repo), "--dockerfile",
                    "Dockerfile", "--port", str(free_port()), *UP)  # fmt: skip
    # A kept release's image is not pruned; deleting with --purge-image removes it.
    assert "0 images removed" in await daemon.ok("images", "prune")
    podman_cmd("image", "exists", f"localhost/dployr/{built}:1")
    # Five more deploys: the first release is no longer kept, so its image goes (an image
    # of the test's own: another test may be running the shared ones).
    digest, image_id = push_own(registry, tmp_path / "old", "old", f"old-{os.urandom(3).hex()}")
    old = f"{registry.repo}@{digest}"
    try:
        v2 = f"{registry.repo}@{registry.digests['v2']}"
        await daemon.ok("deploy", "--name", "pruned", "--image", old, "--port", str(port), *UP)
        for _ in range(5):
            await daemon.ok("deploy", "--name", "pruned", "--image", v2, "--port", str(port), *UP)
        out = await daemon.ok("images", "prune")
        assert f"removed {old}\n1 image removed" in out, out
        still = await trio.run_process(podman.argv("image", "exists", old), check=False)
        assert still.returncode == 1
        podman_cmd("image", "exists", v2)
        await daemon.ok("delete", built, "--yes", "--purge-image")
        gone = await trio.run_process(podman.argv("image", "exists", f"localhost/dployr/{built}:1"),
                                      check=False)  # fmt: skip
        assert gone.returncode == 1
    finally:  # (removed by the prune, unless the test failed before)
        podman_cmd("rmi", "--force", "--ignore", image_id, capture=True)


async def test_metrics_count_the_container_s_processes(tmp_path: Path, registry: Registry) -> None:
    up = await Daemon.start(tmp_path / "data", "--metrics-interval", "0.2")
    try:
        await up.ok("deploy", "--name", "web", "--image", f"{registry.repo}:v1",
                    "--port", str(free_port()), *UP)  # fmt: skip
        url = up.url.replace("http://", "ws://")
        url += f"/api/v1/services/web/metrics/stream?token={up.token}"
        async with open_websocket_url(url) as feed:
            with trio.fail_after(WAIT):
                while True:  # each sample: podman, the container's init and its httpd
                    message = json.loads(await feed.get_message())
                    if message.get("type") == "metrics" and message["processes"] >= 3:
                        break
        await up.ok("delete", "web", "--yes")
    finally:
        code, _ = await up.stop()
    assert code == 0


async def test_a_container_that_ignores_sigterm_is_killed_after_the_grace_and_removed(
    daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    port = free_port()
    plan = tmp_path / "dployr.toml"  # a blueprint carries the image, as --image does
    plan.write_text(
        f'name = "stubborn"\nimage = "{registry.repo}:stubborn"\nport = {port}\n'
        'stop_grace = 1\nhealth_check = "/version"\n[restart]\nmin_uptime = 0.3\n'
    )
    await daemon.ok("deploy", "--blueprint", str(plan))
    assert await http_get(port, "/version") == "stubborn\n"
    instance = await instance_id(daemon)
    assert len(containers_of(instance)) == 1
    started = trio.current_time()
    await daemon.ok("service", "stop", "stubborn")
    assert trio.current_time() - started >= 1.0  # the grace, then SIGKILL
    assert containers_of(instance) == []
    assert conmons_of(instance) == []
