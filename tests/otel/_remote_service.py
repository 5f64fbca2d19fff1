"""A service in its own process that continues the caller's trace from the request headers.

Run as ``python tests/otel/_remote_service.py``; configured by the environment (e.g.
``MLFLOW_TRACKING_URI``). Serves ``POST /answer`` on 127.0.0.1, prints ``PORT <n>`` once it
listens, answers one request (after delivering its spans), then exits.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import flowtel
from flowtel import SpanType


@flowtel.trace(span_type=SpanType.TOOL)
def lookup(city: str) -> str:
    return f"Sunny in {city}"


@flowtel.trace(span_type=SpanType.AGENT)
def answer(question: str) -> str:
    return lookup(question.rsplit(" ", 1)[-1].rstrip("?"))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with flowtel.set_tracing_context_from_http_request_headers(dict(self.headers)):
            result = answer(body["question"])
        delivered = flowtel.flush(30)  # the spans are at the destination before the caller goes on
        payload = json.dumps({"answer": result, "delivered": delivered}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.handle_request()
    server.server_close()


if __name__ == "__main__":
    sys.exit(main())
