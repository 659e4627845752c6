"""A control plane served over TLS by ``dployr up --tls-cert/--tls-key``: agents join over
https and dial wss, verifying its certificate; the CLI talks https to it, on its machine
and from another; a certificate or key it cannot serve is one line at start; a wss dial,
the agent's or a CLI feed's, is one TLS connection."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization

from dployr.cli.client import ApiError, Client, Target
from tests.agent.conftest import WAIT, TlsProxy, agent, control_plane
from tests.cli.conftest import Daemon, clean_env, free_port, run_cli, start_up
from tests.helpers import PYTHON, web_repo
from tests.tls import self_signed

AGENT_ARGS = ("--service-host", "127.0.0.1", "--shared-user")


@pytest.mark.slow
async def test_an_agent_joins_a_tls_control_plane_over_wss_and_runs_a_deploy(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    plane = await Daemon.start(tmp_path / "plane", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert plane.url.startswith("https://127.0.0.1:"), plane.banner
        trusted = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=trusted, timeout=20) as http:
            assert (await http.get(f"{plane.url}/healthz")).status_code == 200
            dashboard = await http.get(f"{plane.url}/", follow_redirects=True)
            assert dashboard.status_code == 200
            assert "text/html" in dashboard.headers["content-type"]
        # The CLI on the control plane's machine trusts the certificate it serves.
        added = await plane.cli("instances", "add", "east")
        assert added.code == 0, added
        token = added.out.strip()
        assert f"--join {plane.url} --token {token} --ca cert.pem\n" in added.err
        assert f"with a copy of {cert} (the certificate this control plane serves)" in added.err
        async with agent(
            tmp_path / "east", "--join", plane.url, "--token", token, "--ca", str(cert)
        ) as east:
            await east.wait_for(f"connected to the control plane {plane.url}")
            port = free_port()
            await plane.ok(
                "deploy", "--name", "api", "--remote", str(web_repo(tmp_path / "repo")),
                "--run-cmd", f"{PYTHON} app.py", "--port", str(port), "--min-uptime", "0.3",
                "--instance", "east",
            )  # fmt: skip
            async with httpx.AsyncClient(timeout=20) as http:
                assert (await http.get(f"http://127.0.0.1:{port}/")).text.startswith("hello")

            # The CLI of another machine: --server https://... verified against --ca.
            remote = ("--server", plane.url, "--token", plane.token)
            listed = await run_cli(*remote, "--ca", str(cert), "--json", "list", env=clean_env())
            assert listed.code == 0, listed
            assert [(s["name"], s["instance"]) for s in json.loads(listed.out)] == [("api", "east")]
            for command in (("list",), ("logs", "api", "--follow")):
                untrusted = await run_cli(*remote, *command, env=clean_env())
                assert "certificate verify failed" in untrusted.one_line_error()
            plain = await run_cli(
                "--server", plane.url.replace("https://", "http://"), "--token", plane.token,
                "list", env=clean_env(),
            )  # fmt: skip
            assert "use https://" in plain.one_line_error()
        kept = json.loads((tmp_path / "east" / "agent.json").read_text())
        assert (kept["url"], kept["ca"]) == (plane.url, str(cert))
    finally:
        code, _ = await plane.stop()
        assert code == 0


@pytest.mark.slow
async def test_an_agent_refuses_a_control_plane_its_ca_does_not_vouch_for_and_keeps_dialling(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    other, _ = self_signed(tmp_path / "other")
    plane = await Daemon.start(tmp_path / "plane", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        added = await plane.cli("instances", "add", "east")
        assert added.code == 0, added
        token = added.out.strip()
        # Joining with the wrong certificate pinned: refused in one line, the token not spent.
        refused = await run_cli(
            "agent", *AGENT_ARGS, "--data-dir", str(tmp_path / "east"),
            "--join", plane.url, "--token", token, "--ca", str(other), env=clean_env(),
        )  # fmt: skip
        assert "certificate verify failed" in refused.one_line_error()
        # An http:// URL to it: refused in one line too, saying what to do.
        plain = await run_cli(
            "agent", *AGENT_ARGS, "--data-dir", str(tmp_path / "east"),
            "--join", plane.url.replace("https://", "http://"), "--token", token,
            env=clean_env(),
        )  # fmt: skip
        assert "https://" in plain.one_line_error()

        async with agent(
            tmp_path / "east", "--join", plane.url, "--token", token, "--ca", str(cert)
        ) as east:
            await east.wait_for("connected to the control plane")
        # Started again with another certificate pinned: every dial is refused, and it
        # goes on dialling (its services would run on meanwhile).
        async with agent(tmp_path / "east", "--ca", str(other)) as east:
            for _ in range(2):
                line = await east.wait_for("cannot reach the control plane")
                assert "certificate verify failed" in line
                assert "dialling again in" in line
            assert not any("connected to the control plane" in seen for seen in east.lines)
    finally:
        code, _ = await plane.stop()
        assert code == 0


async def test_a_certificate_or_key_it_cannot_serve_is_one_line_at_start(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls")
    _, other_key = self_signed(tmp_path / "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    locked = tmp_path / "locked.pem"  # OpenSSL would ask for its password on the tty
    key_pem = serialization.load_pem_private_key(key.read_bytes(), None)
    locked.write_bytes(
        key_pem.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cases = [
        (("--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(key)), "cannot read"),
        (("--tls-cert", str(cert), "--tls-key", str(other_key)), "the key is not the cert"),
        (("--tls-cert", str(junk), "--tls-key", str(key)), "is not a PEM certificate"),
        (("--tls-cert", str(cert), "--tls-key", str(cert)), "is not a PEM private key"),
        (("--tls-cert", str(cert), "--tls-key", str(locked)), "is encrypted"),
        (("--tls-cert", str(cert)), "--tls-cert and --tls-key go together"),
    ]
    for number, (args, expected) in enumerate(cases):
        data = tmp_path / f"data-{number}"
        process, lines = await start_up(data, *args)
        assert await process.wait() != 0, (args, lines)
        err = (tmp_path / f"data-{number}.stderr").read_text()
        assert len(err.splitlines()) == 1, (args, err)
        assert err.startswith("error: "), (args, err)
        assert expected in err, (args, err)
        assert not (data / "daemon.json").exists()


@pytest.mark.slow
async def test_an_agent_follows_its_control_plane_to_tls_when_given_its_https_url(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    port = str(free_port())
    plane = await Daemon.start(tmp_path / "plane", "--port", port)
    try:
        added = await plane.cli("instances", "add", "east")
        assert added.code == 0, added
        async with agent(
            tmp_path / "east", "--join", plane.url, "--token", added.out.strip()
        ) as east:
            await east.wait_for("connected to the control plane http://")
    finally:
        code, _ = await plane.stop()
        assert code == 0
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))
    plane = await Daemon.start(tmp_path / "plane", "--port", port, *tls)
    try:
        # Dialling http:// still: every dial fails, saying what to do.
        async with agent(tmp_path / "east") as east:
            line = await east.wait_for("cannot reach the control plane")
            assert "if it serves https, give --join https://... once" in line
        # Given its https:// URL (and the certificate to trust), it dials it from now on.
        async with agent(tmp_path / "east", "--join", plane.url, "--ca", str(cert)) as east:
            assert "the control plane serves TLS now" in await east.wait_for("serves TLS")
            await east.wait_for(f"connected to the control plane {plane.url}")
        kept = json.loads((tmp_path / "east" / "agent.json").read_text())
        assert (kept["url"], kept["ca"]) == (plane.url, str(cert))
    finally:
        code, _ = await plane.stop()
        assert code == 0


class CountingTlsProxy(TlsProxy):
    """TLS in front of a control plane, counting the connections it accepted: one TLS
    handshake each."""

    def __init__(self, upstream_port: int, cert: Path, key: Path) -> None:
        super().__init__(upstream_port, cert, key)
        self.accepted = 0

    async def _connection(self, client: trio.SSLStream[trio.SocketStream]) -> None:
        self.accepted += 1
        await super()._connection(client)


@pytest.mark.slow
async def test_an_agent_dials_wss_over_one_tls_connection(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    async with control_plane(tmp_path / "cp") as cp:
        proxy = CountingTlsProxy(int(cp.url.rsplit(":", 1)[1]), cert, key)
        await nursery.start(proxy.serve)
        token = await cp.join_token("a1")
        async with agent(
            tmp_path / "a1", "--join", proxy.url, "--token", token, "--ca", str(cert)
        ) as a1:
            await a1.wait_for(f"connected to the control plane {proxy.url}")
        joined = proxy.accepted  # the join's requests, and its first dial
        for _ in range(3):  # joined already: a start is one dial, nothing else
            async with agent(tmp_path / "a1") as a1:
                await a1.wait_for(f"connected to the control plane {proxy.url}")
        assert proxy.accepted - joined == 3
    nursery.cancel_scope.cancel()


async def test_a_cli_feed_over_https_is_one_tls_connection(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    async with control_plane(tmp_path / "cp") as cp:
        proxy = CountingTlsProxy(int(cp.url.rsplit(":", 1)[1]), cert, key)
        await nursery.start(proxy.serve)
        client = Client(Target(proxy.url, cp.token, ca=str(cert)), timeout=WAIT)
        with trio.fail_after(WAIT):
            async with client.events():  # open: the daemon accepted the feed
                pass
            with pytest.raises(ApiError, match="no service named 'missing'"):
                async with client.follow("missing"):  # refused, in its handshake's answer
                    pass
        assert proxy.accepted == 2
    nursery.cancel_scope.cancel()
