"""Schemathesis fuzzes a real daemon from its own OpenAPI document: no 500, no schema violation.

The checks are every one schemathesis has, but ``negative_data_rejection``: where a rule is
more than a schema can say (which remotes git may fetch), the document states a subset that
is always accepted, so some requests outside the schema are accepted too. Left out of the
fuzzing: ``deploy``, which would fetch and run whatever remote and command it is given
(its hostile inputs are in test_input.py), and the WebSocket feeds, whose 101 answers are
not HTTP responses schemathesis can check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.helpers import Daemon

ST = str(Path(sys.executable).with_name("st"))


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    daemon: Daemon, tmp_path: Path
) -> None:
    command = [
        ST,
        "run",
        f"{daemon.url}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {daemon.token}",
        "--checks",
        "all",
        "--exclude-checks",
        "negative_data_rejection",
        "--exclude-operation-id",
        "deploy",
        # Revoking tokens with the fuzzer's data revokes its own admin token (tests/security/
        # test_auth.py tests revocation).
        "--exclude-operation-id",
        "revoke_token",
        "--exclude-operation-id",
        "follow_logs",
        "--exclude-operation-id",
        "follow_metrics",
        "--exclude-operation-id",
        "follow_events",
        "--exclude-operation-id",
        "agent_channel",
        # An upload's body is a .tar.gz, which schemathesis cannot make ("no supported
        # serializers for application/gzip"); its hostile archives are in
        # tests/cluster/test_upload_archive.py.
        "--exclude-operation-id",
        "upload",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "5",
        "--seed",
        "12",
        "--generation-database",
        "none",
        "--workers",
        "1",  # hypothesis's lambda descriptions are not thread-safe on Python 3.11
        "--request-timeout",
        "20",
        "--no-color",
    ]
    with trio.fail_after(240):
        result = await trio.run_process(
            command, capture_stdout=True, stderr=subprocess.STDOUT, check=False, cwd=tmp_path
        )
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output[-6000:]
