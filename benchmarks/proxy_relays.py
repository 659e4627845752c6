"""The reference relay the proxy benchmark puts beside dployr's proxy, to show where its cost is.

Not part of dployr: :class:`NginxStream`, nginx's ``stream`` module (Debian's ``nginx``
and ``libnginx-mod-stream``) with one worker, listening on a port and relaying every
connection to ``127.0.0.1:<target>``, as the proxy does: what a proxy written in C, on
epoll, can do — the cost of the extra hop itself. (A stand-alone trio relay on plain
non-blocking sockets was here too, until dployr's proxy became that relay.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class NginxStream:
    """nginx relaying ``listen`` to ``target`` with its stream module, one worker."""

    MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")

    def __init__(self, folder: Path, listen: int, target: int) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists() or not self.MODULE.exists():
            raise FileNotFoundError("apt-get install nginx libnginx-mod-stream")
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "nginx.conf"
        config.write_text(
            f"load_module {self.MODULE};\n"
            "daemon off;\n"
            "worker_processes 1;\n"
            f"pid {folder}/nginx.pid;\n"
            f"error_log {folder}/error.log;\n"
            "events { worker_connections 4096; }\n"
            "stream {\n"
            f"  server {{ listen 127.0.0.1:{listen} backlog=1024; "
            f"proxy_pass 127.0.0.1:{target}; }}\n"
            "}\n"
        )
        self.process = subprocess.Popen(
            [nginx, "-p", str(folder), "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
