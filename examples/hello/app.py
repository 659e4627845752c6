"""hello: a tiny web app to deploy with dployr (Python standard library only).

It listens on $PORT, which dployr gives each release, answers GET / with a greeting
(the GREETING environment variable) and GET /health with "ok" for dployr's health
check, and logs one line per request (health checks aside) to stdout.
"""

import http.server
import os

PORT = int(os.environ.get("PORT", "8080"))


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self.answer(200, "ok\n")
        elif self.path == "/":
            greeting = os.environ.get("GREETING", "hello")
            deployment = os.environ.get("DPLOYR_DEPLOYMENT", "?")
            self.answer(200, f"{greeting} from dployr (deployment {deployment})\n")
        else:
            self.answer(404, "not found\n")

    def answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        if self.path != "/health":  # dployr's health check every 10 s would drown the rest
            print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Hello)
    print(f"hello is listening on port {PORT}", flush=True)
    server.serve_forever()
