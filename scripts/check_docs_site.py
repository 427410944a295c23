"""Render the built docs site in headless Chromium and check what a reader sees.

    python scripts/check_docs_site.py                  # build with mkdocs, then check
    python scripts/check_docs_site.py --site site      # check an already built site
    python scripts/check_docs_site.py --png-dir shots  # keep the screenshots there

Serves the site on a free 127.0.0.1 port and opens, in Debian's ``chromium``
(``apt-get install chromium``; ``--chromium PATH`` for another binary), the
home page, the event reference and a search for ``--query``, then the same
search from ``file://`` (the offline plugin's path). Each is saved as a PNG.
The check fails on:

- a JavaScript error, an uncaught exception or an error in the console
  (a missing asset shows up there too);
- a request to any host but 127.0.0.1 (the browser is also told to resolve
  no other host, so nothing leaves the machine);
- a search that finds nothing;
- a table of the event reference wider than its container without a
  horizontal scroll bar (clipped, or spilling over the page).

The browser is driven over the Chrome DevTools Protocol on a pipe
(``--remote-debugging-pipe``): no package beyond the standard library, no
browser download. Exit status 0 when every check passed, 1 otherwise, with
one line per problem.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1280, 900
TIMEOUT = 20.0  # seconds for one page to load, or a search to answer
LOCAL_HOSTS = {"127.0.0.1"}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    # any host but 127.0.0.1 resolves to nothing: a stray CDN URL fails here
    # (and is reported) instead of reaching the network
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--allow-file-access-from-files",
    f"--window-size={WIDTH},{HEIGHT}",
    "--remote-debugging-pipe",
]

# For each table in the page's article: does it fit, scroll, or get cut off?
# Walks up from the table to the first box its content overflows: that box
# must scroll horizontally (overflow-x auto or scroll).
TABLES_JS = """
(() => {
  const describe = el => el.tagName.toLowerCase() + (el.className ? '.' +
      String(el.className).trim().split(/\\s+/).join('.') : '');
  const root = document.documentElement;
  return [...document.querySelectorAll('article table')].map((table, index) => {
    let verdict = 'fits';
    for (let el = table; el && el !== root; el = el.parentElement) {
      if (el.scrollWidth <= el.clientWidth + 1) continue;
      const overflow = getComputedStyle(el).overflowX;
      if (overflow === 'auto' || overflow === 'scroll') { verdict = 'scrolls'; break; }
      if (overflow === 'hidden' || overflow === 'clip') {
        verdict = 'clipped by ' + describe(el); break;
      }
    }
    if (verdict === 'fits' && root.scrollWidth > root.clientWidth + 1) {
      verdict = 'wider than the page';
    }
    const header = [...table.querySelectorAll('th')].map(th => th.textContent.trim());
    return {index, verdict, width: table.scrollWidth, header: header.join(' | ')};
  });
})()
"""

SEARCH_JS = """
(() => ({
  results: document.querySelectorAll('.md-search-result__item').length,
  meta: (document.querySelector('.md-search-result__meta') || {}).textContent || '',
}))()
"""


class Browser:
    """One headless Chromium, driven over the DevTools protocol on a pipe."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def on_fds_3_and_4() -> None:  # the pipe Chromium reads (3) and writes (4)
            read, write = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=on_fds_3_and_4,  # before any thread of ours starts
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, name="cdp-reader", daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := self._in.read(65536):
            buffer += chunk
            *complete, buffer = buffer.split(b"\0")
            for raw in complete:
                self._messages.put(json.loads(raw))
        self._messages.put(None)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        """Send one command and wait for its result; events seen meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._get(deadline, f"the answer to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    msg = f"{method} failed: {reply['error']}"
                    raise RuntimeError(msg)
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for_event(self, method: str, session: str, since: int) -> None:
        """Wait for an event of this tab, counting those kept from index ``since`` on."""
        deadline = time.monotonic() + TIMEOUT
        while not any(
            e.get("method") == method and e.get("sessionId") == session for e in self.events[since:]
        ):
            self.events.append(self._get(deadline, method))

    def _get(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        try:
            message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            msg = f"Chromium sent no {waiting_for} within {TIMEOUT:.0f} s"
            raise TimeoutError(msg) from None
        if message is None:
            msg = f"Chromium exited (status {self.process.poll()}) while waiting for {waiting_for}"
            raise RuntimeError(msg)
        return message

    def open(self, url: str) -> str:
        """A new tab showing ``url`` once loaded; returns its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session: str = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        since = len(self.events)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for_event("Page.loadEventFired", session, since)
        return session

    def evaluate(self, expression: str, session: str) -> Any:
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
        )
        if "exceptionDetails" in result:
            msg = f"evaluating a check failed: {result['exceptionDetails']}"
            raise RuntimeError(msg)
        return result["result"].get("value")

    def poll(self, expression: str, session: str, done: Any) -> Any:
        """Evaluate until ``done(value)`` or the deadline; the last value."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            value = self.evaluate(expression, session)
            if done(value) or time.monotonic() > deadline:
                return value
            time.sleep(0.1)

    def screenshot(self, session: str, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._out.write(json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def problems_in_events(events: list[dict[str, Any]], session: str, page: str) -> list[str]:
    """JavaScript errors, console errors and non-local requests of one tab."""
    found = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            found.append(f"{page}: JavaScript error: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            found.append(f"{page}: console.error: {args}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            found.append(f"{page}: browser error: {entry.get('text')} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            parts = urllib.parse.urlsplit(url)
            if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
                found.append(f"{page}: request to a non-local host: {url}")
    return found


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """The site over HTTP on a free 127.0.0.1 port; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


def check_tables(tables: list[dict[str, Any]]) -> list[str]:
    if not tables:
        return ["event reference: no table found (is the catalogue still generated?)"]
    return [
        f"event reference: table {t['index'] + 1} ({t['header'][:60]}..., {t['width']} px) "
        f"is {t['verdict']}: it must scroll or wrap"
        for t in tables
        if t["verdict"] not in ("fits", "scrolls")
    ]


def check_search(found: dict[str, Any], page: str, query: str) -> list[str]:
    if found["results"] > 0:
        return []
    return [f"{page}: searching {query!r} found nothing (the page said {found['meta']!r})"]


def check_site(site: Path, chromium: str, png_dir: Path, query: str) -> list[str]:
    problems: list[str] = []
    png_dir.mkdir(parents=True, exist_ok=True)
    q = urllib.parse.quote_plus(query)
    with tempfile.TemporaryDirectory(prefix="check-docs-chromium-") as profile:
        browser = Browser(chromium, Path(profile))
        try:
            with serve(site) as base:
                pages = [
                    ("home", f"{base}index.html"),
                    ("events", f"{base}reference/events.html"),
                    ("search", f"{base}index.html?q={q}"),
                    ("search-file", f"{(site / 'index.html').as_uri()}?q={q}"),
                ]
                for name, url in pages:
                    session = browser.open(url)
                    if name == "events":
                        browser.poll(
                            "document.querySelectorAll('.md-typeset__scrollwrap').length",
                            session,
                            bool,
                        )
                        problems += check_tables(browser.evaluate(TABLES_JS, session))
                        browser.evaluate(  # the catalogue, below the sticky header
                            "scrollBy(0, document.querySelector('article table')"
                            ".getBoundingClientRect().top - 160)",
                            session,
                        )
                    elif name.startswith("search"):
                        found = browser.poll(SEARCH_JS, session, lambda v: v["results"] > 0)
                        problems += check_search(found, name, query)
                    browser.screenshot(session, png_dir / f"{name}.png")
                    problems += problems_in_events(browser.events, session, name)
                    print(f"{name}: {url} -> {png_dir / f'{name}.png'}", flush=True)
        finally:
            browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, help="a built site (default: build one now)")
    parser.add_argument("--png-dir", type=Path, help="where the screenshots go (default: temp)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--query", default="health check", help="what the search check types")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(
            f"no Chromium at {args.chromium}: apt-get install chromium, or pass --chromium PATH",
            file=sys.stderr,
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="check-docs-") as scratch:
        site = args.site
        if site is None:
            site = Path(scratch) / "site"
            subprocess.run(
                [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                cwd=ROOT,
                check=True,
                env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            )
        png_dir = args.png_dir or Path(scratch) / "png"
        problems = check_site(site.resolve(), args.chromium, png_dir, args.query)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        "the docs site renders offline: no JS error, no external request, search finds, "
        "tables scroll"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
