"""A RESP3-speaking TCP proxy that plays a managed Redis under maintenance.

No open-source server sends maintenance notifications, so the tests talk to
a real ``redis-server`` through this proxy. It forwards every byte both ways
and, on top of that:

* answers redis-py's maintenance handshake: ``CLIENT MAINT_NOTIFICATIONS ON
  moving-endpoint-type TYPE`` is sent upstream as ``ECHO OK``, so the reply
  (``OK``) comes back in its place in the reply stream, whatever else the
  client pipelined around it; each one is counted in ``handshakes``;
* injects push frames (``>MIGRATING 1 10`` ...) into chosen client
  connections with :meth:`MaintProxy.push`. The server's replies are cut
  into whole RESP3 frames before they are passed on, and a push is written
  under the same lock, so it always lands between two frames.

Listens on 127.0.0.1 (or another loopback address given as ``host``, for a
``MOVING`` target), on a free port unless ``port`` is given.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["MaintProxy", "encode_push", "frame_end"]


def frame_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """Where the RESP2/RESP3 frame starting at ``pos`` ends, or ``None`` if
    ``buf`` does not hold all of it yet."""
    if pos >= len(buf):
        return None
    kind = buf[pos : pos + 1]
    newline = buf.find(b"\r\n", pos)
    if newline < 0:
        return None
    head = bytes(buf[pos + 1 : newline])
    after = newline + 2
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return after
    if kind in (b"$", b"!", b"="):
        size = int(head)
        if size < 0:
            return after
        end = after + size + 2
        return end if end <= len(buf) else None
    if kind in (b"*", b"~", b">"):
        count = int(head)
    elif kind == b"%":
        count = 2 * int(head)
    elif kind == b"|":  # attributes, then the frame they describe
        count = 2 * int(head) + 1
    else:
        raise ValueError(f"not a RESP frame: {bytes(buf[pos : pos + 20])!r}")
    position: int | None = after
    for _ in range(max(count, 0)):
        assert position is not None
        position = frame_end(buf, position)
        if position is None:
            return None
    return position


def _encode(value: Any) -> bytes:
    if value is None:
        return b"_\r\n"
    if isinstance(value, bool):
        return b"#t\r\n" if value else b"#f\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, (list, tuple)):
        return b"*%d\r\n" % len(value) + b"".join(_encode(item) for item in value)
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_push(*parts: Any) -> bytes:
    """A RESP3 push frame: ``encode_push("MIGRATING", 1, 10)`` is
    ``>3 $9 MIGRATING :1 :10``. Strings are bulk strings, ints integers,
    ``None`` a null, lists arrays."""
    return b">%d\r\n" % len(parts) + b"".join(_encode(part) for part in parts)


def _command_end(buf: bytearray) -> tuple[int, list[bytes]] | None:
    """A complete client command (a RESP array of bulk strings) at the start
    of ``buf``: its end and its arguments, or ``None`` if incomplete."""
    end = frame_end(buf, 0)
    if end is None:
        return None
    args: list[bytes] = []
    if buf[:1] == b"*":
        newline = buf.find(b"\r\n")
        position = newline + 2
        for _ in range(int(buf[1:newline])):
            newline = buf.find(b"\r\n", position)
            size = int(buf[position + 1 : newline])
            args.append(bytes(buf[newline + 2 : newline + 2 + size]))
            position = newline + 2 + size + 2
    return end, args


_ECHO_OK = b"*2\r\n$4\r\nECHO\r\n$2\r\nOK\r\n"


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: MaintProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.write_lock = threading.Lock()
        self.closed = False
        self.commands: list[list[bytes]] = []

    def start(self) -> None:
        for target in (self._client_to_server, self._server_to_client):
            threading.Thread(target=target, daemon=True).start()

    def send_to_client(self, data: bytes) -> None:
        with self.write_lock:
            if not self.closed:
                self.client.sendall(data)

    def _client_to_server(self) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = self.client.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    found = _command_end(buf)
                    if found is None:
                        break
                    end, args = found
                    raw = bytes(buf[:end])
                    del buf[:end]
                    self.commands.append(args)
                    if [a.upper() for a in args[:2]] == [b"CLIENT", b"MAINT_NOTIFICATIONS"]:
                        self.proxy._handshake(args)
                        raw = _ECHO_OK
                    self.upstream.sendall(raw)
        except OSError:
            pass
        self.close()

    def _server_to_client(self) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = self.upstream.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    end = frame_end(buf, 0)
                    if end is None:
                        break
                    frame = bytes(buf[:end])
                    del buf[:end]
                    self.send_to_client(frame)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        with self.write_lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class MaintProxy:
    """Forwards to ``upstream_host:upstream_port``; see the module docstring."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(64)
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self.links: list[_Link] = []
        self.accepted = 0
        #: The arguments of each ``CLIENT MAINT_NOTIFICATIONS`` received.
        self.handshakes: list[list[bytes]] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(self, client, upstream)
            with self._lock:
                if self._stopped:
                    link.close()
                    return
                self.links.append(link)
                self.accepted += 1
            link.start()

    def _handshake(self, args: list[bytes]) -> None:
        with self._lock:
            self.handshakes.append(args)

    def open_links(self) -> list[_Link]:
        with self._lock:
            return [link for link in self.links if not link.closed]

    def push(self, *parts: Any, links: Iterable[_Link] | None = None) -> int:
        """Send the push frame ``parts`` to ``links`` (default: every open
        client connection), between two reply frames; returns how many got it."""
        frame = encode_push(*parts)
        sent = 0
        for link in list(links) if links is not None else self.open_links():
            try:
                link.send_to_client(frame)
                sent += 1
            except OSError:
                pass
        return sent

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            links = list(self.links)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() on Linux
        self._listener.close()
        for link in links:
            link.close()
        self._thread.join(5)

    def __enter__(self) -> MaintProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
