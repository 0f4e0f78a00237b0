"""Every byte a browser page received, for blindness tests: nothing sent may name a secret.

Shared by the Arena and access browser tests (one copy: a fix to how event streams are read
must reach every test that relies on it).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterable


class Recorder:
    """Every byte the page received, in arrival order, so nothing it was sent goes unchecked.

    Ordinary responses are read with Playwright (``page.on("requestfinished")``, then the
    response body). Gradio sends event outputs over a ``text/event-stream`` response that
    stays open, whose body Playwright cannot read, so those are streamed through the
    DevTools protocol (``Network.streamResourceContent`` + ``Network.dataReceived``).
    """

    def __init__(self, page) -> None:  # noqa: ANN001 - playwright page
        self.chunks: list[tuple[str, bytes]] = []
        self._streams: dict[str, str] = {}
        self._pending: set[str] = set()
        self._done: set[str] = set()  # streams whose loadingFinished has been seen
        page.on("requestfinished", self._finished)
        self._cdp = page.context.new_cdp_session(page)
        self._cdp.on("Network.responseReceived", self._stream_started)
        self._cdp.on("Network.dataReceived", self._stream_data)
        self._cdp.on("Network.loadingFinished", self._stream_finished)
        self._cdp.send("Network.enable")

    def _finished(self, request) -> None:  # noqa: ANN001
        response = request.response()
        if response is None or "event-stream" in (response.headers.get("content-type") or ""):
            return
        with contextlib.suppress(Exception):  # redirects and aborted requests have no body
            self.chunks.append((request.url, response.body()))

    def _stream_started(self, event: dict) -> None:
        if "event-stream" not in event["response"].get("mimeType", ""):
            return
        rid, url = event["requestId"], event["response"]["url"]
        self._streams[rid] = url
        try:
            answer = self._cdp.send("Network.streamResourceContent", {"requestId": rid})
        except Exception:  # noqa: BLE001 - already over: read it whole when it finishes
            self._pending.add(rid)
            if rid in self._done:  # it finished while we asked (events run during send): read it now
                self._read_whole(rid)
            return
        self.chunks.append((url, base64.b64decode(answer.get("bufferedData", ""))))

    def _stream_data(self, event: dict) -> None:
        url = self._streams.get(event["requestId"])
        if url is not None and event["requestId"] not in self._pending and event.get("data"):
            self.chunks.append((url, base64.b64decode(event["data"])))

    def _stream_finished(self, event: dict) -> None:
        rid = event["requestId"]
        self._done.add(rid)
        if rid in self._pending:
            self._read_whole(rid)

    def _read_whole(self, rid: str) -> None:
        """A stream that was over before it could be streamed: its whole body, once."""
        self._pending.discard(rid)
        try:
            answer = self._cdp.send("Network.getResponseBody", {"requestId": rid})
        except Exception:  # noqa: BLE001 - the page was closed meanwhile: nothing left to check
            return
        body = answer["body"]
        data = base64.b64decode(body) if answer.get("base64Encoded") else body.encode()
        self.chunks.append((self._streams[rid], data))

    def mark(self) -> int:
        return len(self.chunks)

    def leaks(self, names: Iterable[bytes], start: int = 0, stop: int | None = None) -> list[str]:
        """``url: name`` for every received body (from ``start``) that holds one of ``names``."""
        return [
            f"{url}: {name.decode()}"
            for url, body in self.chunks[start:stop]
            for name in names
            if name in body
        ]

    def contains(self, text: str, start: int = 0, stop: int | None = None) -> bool:
        needle = json.dumps(text)[1:-1].encode()  # as it appears inside JSON
        return any(needle in body for _, body in self.chunks[start:stop])


    def carrying(self, needle: str) -> list[str]:
        """URLs of received bodies that hold ``needle`` (case-insensitive)."""
        return [url for url, body in self.chunks if needle.lower().encode() in body.lower()]
