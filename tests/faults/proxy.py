"""A fault-injecting TCP proxy for the fault suite: the network misbehaving.

:class:`FaultProxy` listens on a loopback port and forwards every connection
to a real Redis server, one thread per proxied connection (plus the accept
thread), at most ``max_connections`` at a time (more are closed at once).
Each test switches it between faults:

* :meth:`~FaultProxy.blackhole`: a partition that keeps sockets open and
  silent. Nothing is forwarded either way (what was sent waits, as TCP would
  retransmit it); the listen backlog is full, so a new connect times out.
* :meth:`~FaultProxy.latency`: every chunk forwarded, each way, waits
  ``seconds`` first.
* :meth:`~FaultProxy.reset_replies`: the next chunk the server sends on any
  connection is cut: half of it reaches the client, then the client's socket
  is reset (``SO_LINGER`` 0: an RST, not a FIN) and the server's closed.
* :meth:`~FaultProxy.close_idle`: a load balancer closing idle connections:
  each open connection gets a clean close (FIN) on the client's side.
* :meth:`~FaultProxy.refuse`: the listening socket is closed, so new
  connects are refused (``ECONNREFUSED``); open connections are left alone.
* :meth:`~FaultProxy.resume`: forwarding again, listening again on the same
  port.

Everything is loopback only; :meth:`~FaultProxy.close` stops every thread.

:data:`CONNECTS` counts ``socket.connect`` calls to a port, through a
process-wide audit hook (audit hooks cannot be removed: it is installed once
and counts only while a label is set in the calling context), independently
of redis-py and of the library under test.
"""

from __future__ import annotations

import contextlib
import contextvars
import selectors
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

__all__ = ["CONNECTS", "ConnectCounter", "FaultProxy"]

_CHUNK = 65536


class ConnectCounter:
    """``socket.connect`` attempts per (label, port), counted by an audit hook.

    The label is a context variable: each thread, and each asyncio task,
    counts under its own (:meth:`counting`), so a bare and an instrumented
    client running side by side through the same proxy are counted apart.
    """

    def __init__(self) -> None:
        self._label: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            "connect_label", default=None
        )
        self._counts: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()
        self._installed = False

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "socket.connect":
            return
        label = self._label.get()
        if label is None:
            return
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2:
            with self._lock:
                self._counts[(label, address[1])] += 1

    def install(self) -> None:
        if not self._installed:
            self._installed = True
            sys.addaudithook(self._hook)

    @contextlib.contextmanager
    def counting(self, label: str) -> Iterator[None]:
        """Count this context's connects under ``label`` while inside."""
        self.install()
        token = self._label.set(label)
        try:
            yield
        finally:
            self._label.reset(token)

    def set_label(self, label: str) -> None:
        """Count under ``label`` from now on in this context (a task's own)."""
        self.install()
        self._label.set(label)

    def get(self, label: str, port: int) -> int:
        with self._lock:
            return self._counts[(label, port)]

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


#: The process-wide counter (one audit hook for the whole test run).
CONNECTS = ConnectCounter()


class _Link:
    """One proxied connection: the client's socket and the server's."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = False


class FaultProxy:
    """A loopback TCP proxy to ``(host, port)`` whose faults a test switches."""

    def __init__(self, host: str, port: int, max_connections: int = 32) -> None:
        self.target = (host, port)
        self.max_connections = max_connections
        self.host = "127.0.0.1"
        self.port = 0
        self._mode = "forward"
        self._delay = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stopping = False
        self._fillers: list[socket.socket] = []
        self._accept_paused = False
        #: How many connections the proxy accepted, and how many it reset.
        self.accepted = 0
        self.resets = 0

    # --- life ---------------------------------------------------------

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        # A tiny backlog: while blackholed (not accepting), new connects pile
        # up in it unanswered.
        listener.listen(1)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        acceptor = threading.Thread(
            target=self._accept_loop, args=(listener,), name="fault-proxy-accept", daemon=True
        )
        self._acceptor = acceptor
        acceptor.start()

    def _unlisten(self) -> None:
        listener, acceptor = self._listener, self._acceptor
        self._listener = self._acceptor = None
        if listener is not None:
            with self._changed:
                self._changed.notify_all()
            if acceptor is not None:
                acceptor.join(10)
                assert not acceptor.is_alive(), "the proxy's accept thread hangs"
            listener.close()

    def close(self) -> None:
        """Stop accepting, close every connection, join every thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._unlisten()
        for filler in self._fillers:
            filler.close()
        for link in list(self._links):
            self._drop(link, reset=False)
        for thread in list(self._threads):
            thread.join(10)
            assert not thread.is_alive(), "a proxy thread hangs"

    # --- faults -------------------------------------------------------

    def _set(self, mode: str, delay: float = 0.0) -> None:
        with self._changed:
            self._mode = mode
            self._delay = delay
            self._changed.notify_all()

    def blackhole(self) -> None:
        """Forward nothing, answer no new connect: the backlog is filled with
        connects of the proxy's own until one times out, so that every
        client connect from now on times out the same way (its SYN dropped),
        as across a partition."""
        self._set("blackhole")
        if self._listener is None:
            return
        with self._changed:  # the accept thread is past its last accept()
            self._changed.wait_for(lambda: self._accept_paused, timeout=10)
            assert self._accept_paused, "the proxy's accept thread did not pause"
        for _ in range(16):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.1)
            try:
                filler.connect((self.host, self.port))
            except OSError:
                filler.close()
                return
            self._fillers.append(filler)
        raise AssertionError("proxy: the listen backlog never filled up")

    def latency(self, seconds: float) -> None:
        self._set("latency", seconds)

    def reset_replies(self) -> None:
        self._set("reset")

    def _drain_backlog(self, listener: socket.socket) -> None:
        listener.settimeout(0)
        try:
            while True:
                try:
                    stale, _ = listener.accept()
                except OSError:
                    return
                with contextlib.suppress(OSError):
                    stale.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                stale.close()
        finally:
            listener.settimeout(0.05)

    def refuse(self) -> None:
        self._set("refuse")
        self._unlisten()

    def resume(self) -> None:
        """Forward everything again (and listen again after :meth:`refuse`).

        Connects left unanswered in the backlog by :meth:`blackhole` were
        given up by their clients (they timed out): they are reset first, so
        that the backlog has room for the connects to come."""
        with self._changed:
            if self._mode == "blackhole" and self._listener is not None:
                self._drain_backlog(self._listener)
            self._mode, self._delay = "forward", 0.0
            self._changed.notify_all()
        for filler in self._fillers:
            filler.close()
        self._fillers.clear()
        if self._listener is None and not self._stopping:
            self._listen()

    def close_idle(self) -> int:
        """A clean close (FIN) of every open connection, client side first.
        Returns how many were closed."""
        links = [link for link in list(self._links) if not link.closed]
        for link in links:
            self._drop(link, reset=False)
        return len(links)

    @property
    def open_links(self) -> int:
        return sum(1 for link in list(self._links) if not link.closed)

    # --- forwarding ---------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._listener is listener and not self._stopping:
            with self._changed:
                if self._mode == "blackhole":
                    # Leave new connects in the backlog, unanswered.
                    self._accept_paused = True
                    self._changed.notify_all()
                    self._changed.wait(0.05)
                    continue
                self._accept_paused = False
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._links = [link for link in self._links if not link.closed]
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._links) >= self.max_connections:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
            link = _Link(client, upstream)
            self._links.append(link)
            thread = threading.Thread(
                target=self._pump, args=(link,), name="fault-proxy-link", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _drop(self, link: _Link, *, reset: bool) -> None:
        with self._lock:
            if link.closed:
                return
            link.closed = True
        if reset:
            self.resets += 1
            with contextlib.suppress(OSError):
                link.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            with contextlib.suppress(OSError):
                link.client.shutdown(socket.SHUT_RDWR)
        for sock in (link.client, link.upstream):
            with contextlib.suppress(OSError):
                sock.close()

    def _pump(self, link: _Link) -> None:
        peer = {link.client: link.upstream, link.upstream: link.client}
        with selectors.DefaultSelector() as selector:
            selector.register(link.client, selectors.EVENT_READ)
            selector.register(link.upstream, selectors.EVENT_READ)
            while not link.closed and not self._stopping:
                with self._changed:
                    if self._mode == "blackhole":
                        self._changed.wait(0.05)
                        continue
                try:
                    ready = selector.select(0.05)
                except (OSError, ValueError):
                    break
                for key, _ in ready:
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    if link.closed or self._mode == "blackhole":
                        break
                    try:
                        data = source.recv(_CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        self._drop(link, reset=False)
                        break
                    if not data:  # EOF from one side: close both cleanly
                        self._drop(link, reset=False)
                        break
                    if not self._forward(link, source is link.upstream, data, peer[source]):
                        break
        self._drop(link, reset=False)

    def _forward(self, link: _Link, from_server: bool, data: bytes, sink: socket.socket) -> bool:
        mode, delay = self._mode, self._delay
        if mode == "latency" and delay > 0:
            time.sleep(delay)  # the injected latency, per chunk
        if mode == "reset" and from_server:
            cut = data[: max(1, len(data) // 2)] if len(data) > 1 else b""
            with contextlib.suppress(OSError):
                _send_all(sink, cut)
            self._drop(link, reset=True)
            return False
        try:
            _send_all(sink, data)
        except OSError:
            self._drop(link, reset=False)
            return False
        return True


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    deadline = time.monotonic() + 10
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise OSError("proxy: peer not reading") from None
            time.sleep(0.001)
            continue
        view = view[sent:]
