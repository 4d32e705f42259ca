"""`--serve HOST:PORT`: an MJPEG preview a headless Pi can be watched through in a browser.

`/` is a page with the stream, `/stream.mjpg` the stream itself, `/frame.jpg` the newest frame.
Each client gets the newest frame when it is ready for one, so a slow client never slows the pipeline.
At most MAX_CLIENTS connections are served at once (more get a 503 at once, without a thread), and a
connection that sends no request, or stops reading the stream, is closed after IDLE_TIMEOUT_S.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from fer_edge.errors import EdgeError

BOUNDARY = "ferframe"
MAX_CLIENTS = 16
IDLE_TIMEOUT_S = 10.0
BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\ntoo busy\r\n"
)


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT, with an IPv6 host in brackets ([::1]:8080); no host: 127.0.0.1."""
    host, _, port = text.rpartition(":")
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise EdgeError(f"--serve {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def check_address(text: str) -> None:
    """Refuse an address the preview cannot listen on (malformed, port taken, host not ours) before
    any work is done; the server binds it again when the run starts."""
    host, port = parse_address(text)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind((host, port))
    except OSError as err:
        raise EdgeError(f"--serve {text}: cannot listen there ({err.strerror or err})") from err


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a name (localhost)
        return False


class FrameHub:
    """The newest JPEG, and a condition clients wait on for the next one."""

    def __init__(self):
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self.closed = False

    def publish(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg, self._seq = jpeg, self._seq + 1
            self._cond.notify_all()

    def wait(self, after: int, timeout: float = 5.0) -> tuple[int, bytes | None]:
        with self._cond:
            self._cond.wait_for(lambda: self._seq != after or self.closed, timeout)
            return self._seq, self._jpeg

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def _handler(hub: FrameHub):
    page = resources.files("fer_edge").joinpath("preview.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        timeout = IDLE_TIMEOUT_S  # on every read and write of the connection

        def log_message(self, *args) -> None:  # no per-request lines in the user's terminal
            pass

        def do_GET(self, head: bool = False) -> None:
            path = urlsplit(self.path).path  # a query (?t=1, a cache-buster) names the same page
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", page, head)
            elif path == "/frame.jpg":
                _, jpeg = hub.wait(-1, 0)
                if jpeg:
                    self._send(200, "image/jpeg", jpeg, head)
                else:
                    self._send(503, "text/plain", b"no frame yet\n", head)
            elif path == "/stream.mjpg":
                self._stream(head)
            else:
                self._send(404, "text/plain", b"not found\n", head)

        def do_HEAD(self) -> None:  # an uptime check or a proxy asks whether the preview is there
            self.do_GET(head=True)

        def _send(self, code: int, kind: str, body: bytes, head: bool = False) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _stream(self, head: bool = False) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if head:
                return
            seq = 0
            try:
                while not hub.closed:
                    seq, jpeg = hub.wait(seq)
                    if jpeg is None:
                        continue
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    self.wfile.write(head.encode() + jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the viewer closed the page, or stopped reading it

    return Handler


class _BoundedServer(ThreadingHTTPServer):
    """One thread per connection, up to MAX_CLIENTS; past that a 503 from the accepting thread."""

    daemon_threads = True
    request_queue_size = 64  # a burst of clients waits in the kernel, not in SYN retries (socketserver: 5)

    def __init__(self, address: tuple[str, int], handler):
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET  # read by bind
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class PreviewServer:
    def __init__(self, address: str):
        host, port = parse_address(address)
        self.hub = FrameHub()
        try:
            self._server = _BoundedServer((host, port), _handler(self.hub))
        except OSError as err:
            raise EdgeError(f"--serve {address}: cannot listen there ({err.strerror or err})") from err
        # 0.0.0.0 or [::]: every interface, so the address to give is this machine's name (a browser
        # elsewhere cannot open http://0.0.0.0/), and the user hears that the network can watch.
        self.everywhere = _unspecified(host)
        shown = socket.gethostname() if self.everywhere else f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fer-serve", daemon=True)
        self._thread.start()

    def publish(self, frame) -> None:
        import cv2

        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            self.hub.publish(jpeg.tobytes())

    def close(self) -> None:
        self.hub.close()
        self._server.shutdown()
        self._server.server_close()
