"""One configuration: `dployr up` offers the defaults DployrConfig holds, and builds from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dployr.config import DaemonConfig, DployrConfig, EngineConfig, GatewayConfig, default


def test_dployr_up_offers_the_configs_defaults() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dployr", "up", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    engine, gateway = EngineConfig(data_dir=Path("/x")), GatewayConfig()
    text = " ".join(result.stdout.split())
    assert f"Address of the API and dashboard. [default: {gateway.host}]" in text
    assert f"--port INTEGER RANGE [default: {gateway.port};" in text
    assert f"listen on. [default: {engine.service_host}]" in text
    assert f"CPU and memory. [default: {engine.metrics_interval};" in text


def test_the_sections_and_their_defaults(tmp_path: Path) -> None:
    config = DployrConfig(EngineConfig(data_dir=tmp_path))
    assert config.data_dir == tmp_path
    assert config.gateway == GatewayConfig()
    assert config.daemon == DaemonConfig()
    assert default(EngineConfig, "connect_deadline") == config.engine.connect_deadline
    with pytest.raises(ValueError, match="no plain default"):
        default(EngineConfig, "data_dir")
