"""ASGI middleware that bounds what a request may cost before any route parses it, and answers HEAD like GET."""

from __future__ import annotations

import sys
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Defaults of lib.dbkit.http.create_api. A JSON API's requests are small: an app whose largest valid request is
# larger raises MAX_BODY_BYTES (the sample's reasoning is beside its own value, lib/sample_app/api.py).
MAX_BODY_BYTES = 128 * 1024
# Far above what API Gateway forwards, far below what costs memory to parse: a 6 MB query string of 750,000
# parameters took ~160 MB to turn into Python objects.
MAX_URL_BYTES = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024


class RequestSizeLimit:
    """Refuse an oversized URL (414), header block (431) or body (413) before the app routes or parses any of it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_url_bytes: int,
        max_header_bytes: int,
        max_body_bytes: int,
        refusal: Callable[[int, str], Response],
    ) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = self._head_too_large(scope)
        if too_large is not None:
            await self.refusal(*too_large)(scope, receive, send)
            return
        if self._declared_length(scope) > self.max_body_bytes:
            await self._refuse_body(scope, receive, send)
            return
        # Content-Length may be absent or wrong, so the bytes themselves are counted too, and reading stops at the cap.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse_body(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _head_too_large(self, scope: Scope) -> tuple[int, str] | None:
        url_bytes = len(scope["path"].encode("utf-8", "replace")) + len(scope["query_string"])
        if url_bytes > self.max_url_bytes:
            return 414, f"the path and query string are longer than {self.max_url_bytes} bytes"
        header_bytes = sum(len(name) + len(value) for name, value in scope["headers"])
        if header_bytes > self.max_header_bytes:
            return 431, f"the request headers are larger than {self.max_header_bytes} bytes"
        return None

    async def _refuse_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.refusal(413, f"request body is larger than {self.max_body_bytes} bytes")(scope, receive, send)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                return int(value) if len(value) <= 18 else sys.maxsize
        return 0


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class HeadAsGet:
    """Route HEAD as GET and send the GET answer's status and headers without its body (RFC 9110 §9.3.2)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)
