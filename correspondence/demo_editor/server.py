"""``soco demo edit``'s local web server: the page and its vendored library as package data, a JSON API over
:class:`~.session.EditorSession`. Bound to 127.0.0.1 only (a demo folder is written on request, and nothing here
authenticates; requests another site's page could send are refused: a foreign ``Host``, a POST not declared
JSON); standard library ``http.server``, one thread per request."""
from __future__ import annotations

import json
import mimetypes
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Callable

from ..errors import SocoError
from .folder import StaleRevisionError
from .session import EditorSession

HOST = "127.0.0.1"
MAX_BODY_BYTES = 64 * 1024 * 1024  # a live photo as a data URL, with room to spare
STATIC = resources.files(__package__) / "static"


def make_server(session: EditorSession, port: int = 0, log: Callable[[str], None] = print) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:``port`` (0: any free port; ``server.server_address[1]`` says which)."""
    routes = {"/api/state": lambda data: session.state(), "/api/segment": session.segment,
              "/api/save": session.save, "/api/try": session.try_transfer}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # quiet: errors are logged by _api
            pass

        def _foreign(self) -> bool:
            """Refuse a request another site's page could make: a Host other than this server's (DNS rebinding)
            or, for a POST, a body that is not declared JSON (a cross-origin "simple" request, no CORS preflight)."""
            port = self.server.server_address[1]
            if self.headers.get("Host") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
                self._json(HTTPStatus.FORBIDDEN, {"error": f"Host {self.headers.get('Host')!r} is not this server"})
                return True
            if self.command == "POST" and self.headers.get_content_type() != "application/json":
                self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "requests must be application/json"})
                return True
            return False

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self._foreign():
                return
            path = self.path.split("?", 1)[0]
            if path == "/api/state":
                return self._api(routes[path], {})
            name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
            target = STATIC / name
            if "/" in name or ".." in name or not target.is_file():
                return self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            self._send(HTTPStatus.OK, target.read_bytes(), mimetypes.guess_type(name)[0] or "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            if self._foreign():
                return
            route = routes.get(self.path)
            if route is None:
                return self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                  {"error": f"request of {length} bytes is over {MAX_BODY_BYTES} (image too large)"})
            try:
                data = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as exc:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": f"request is not JSON: {exc}"})
            self._api(route, data)

        def _api(self, route, data) -> None:
            try:
                self._json(HTTPStatus.OK, route(data))
            except (BrokenPipeError, ConnectionResetError):  # the page closed or reloaded meanwhile
                log(f"[editor] {self.path}: the page went away before the answer")
            except StaleRevisionError as exc:
                log(f"[editor] {exc}")
                self._json(HTTPStatus.CONFLICT, {"error": str(exc), "stale": True})
            except SocoError as exc:
                log(f"[editor] {self.path}: {exc}")
                self._json(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc)})
            except Exception as exc:  # a bug: the page says so, the terminal has the traceback
                log(f"[editor] {self.path} failed:\n{traceback.format_exc()}")
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(exc).__name__}: {exc}"})

        def _json(self, status: HTTPStatus, payload: dict) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((HOST, int(port)), Handler)
    server.daemon_threads = True
    return server
