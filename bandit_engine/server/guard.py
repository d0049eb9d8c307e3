"""The guard in front of every endpoint: roles (which token may call what), size and nesting
limits on bodies, the raw-ASGI fast path of the two hot endpoints, and request latency metrics.

Written as raw ASGI (not FastAPI dependencies) because it runs on every request and this is the
cheapest place to refuse one before any parsing happens. The limits met even earlier, in the HTTP
protocol (header size, read timeouts, connections), are in :mod:`bandit_engine.server.protocol`.
"""

from __future__ import annotations

import email.message
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .auth import Role, Secret, roles_of
from .errors import BodyTooLarge, error_body, error_headers, exception_payload
from .metrics import Metrics

__all__ = [
    "MAX_JSON_DEPTH",
    "OPEN_PAGES",
    "OPEN_PATHS",
    "FastRoute",
    "GuardMiddleware",
    "is_open",
    "json_too_deep",
    "parse_body",
    "role_for",
]

logger = logging.getLogger("bandit_engine.server")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
#: The dashboard's pages and assets (no data in them) and its public, differentially private
#: data: served without a token (:mod:`bandit_engine.server.dashboard`).
OPEN_PAGES = frozenset({"/dashboard", "/dashboard/public", "/dashboard/public/data"})
_STATIC = "/dashboard/static/"


def is_open(method: str, path: str) -> bool:
    """Whether a request needs no token: health probes, the dashboard's pages and assets."""
    if path in OPEN_PATHS:
        return True
    return method in ("GET", "HEAD") and (path in OPEN_PAGES or path.startswith(_STATIC))


_JSON = "application/json"


def role_for(method: str, path: str) -> Role:
    """The role an endpoint needs: ``decide`` for posting decisions and events, ``admin`` for
    everything under ``/v1/admin/``, ``read`` for the rest (read-back, metrics, API docs)."""
    if path.startswith("/v1/admin/"):
        return "admin"
    if method == "POST" and path in ("/v1/decisions", "/v1/events"):
        return "decide"
    return "read"


FastHandler = Callable[[Any], Awaitable[dict[str, Any]]]
FastRoute = tuple[type[BaseModel], FastHandler, int]


def _is_json(content_type: bytes | None) -> bool | None:
    """True for JSON media types, False for others, None when the header is absent (FastAPI's
    rules: ``application/json`` or ``application/*+json``, parameters ignored)."""
    if content_type is None:
        return None
    if content_type == b"application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type.decode("latin-1")
    if message.get_content_maintype() != "application":
        return False
    sub = message.get_content_subtype()
    return sub == "json" or sub.endswith("+json")


#: No request body of this API nests deeper than a few levels; deeper JSON is refused before it is
#: parsed (the standard parsers recurse once per level, and a 2 KB body can nest a thousand deep).
MAX_JSON_DEPTH = 32


def json_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``raw`` nests arrays / objects more than ``limit`` levels deep
    (brackets inside strings do not count). Cheap for ordinary bodies: only a body holding more
    than ``limit`` opening brackets is scanned."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _too_deep() -> StarletteHTTPException:
    return StarletteHTTPException(
        400, f"JSON nesting must be at most {MAX_JSON_DEPTH} levels deep, got deeper"
    )


def parse_body(model: type[BaseModel], raw: bytes, content_type: bytes | None) -> Any:
    """Validate a request body exactly as FastAPI does for a single body model."""
    if json_too_deep(raw):
        raise _too_deep()
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    obj: Any = raw
    if _is_json(content_type):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}]
            ) from None
        except ValueError:  # not UTF-8
            raise StarletteHTTPException(400, "There was an error parsing the body") from None
    try:
        return model.model_validate(obj)
    except PydanticValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


class GuardMiddleware:
    """Pure ASGI middleware: bearer auth, body size limit (413), latency metrics, and the hot path.

    Written as raw ASGI (not a FastAPI dependency) because it runs on every request and this is the
    cheapest place to refuse one before any parsing happens. ``fast`` routes (``POST
    /v1/decisions`` and ``POST /v1/events``) are served here directly with the same request models,
    handlers and error mapping as their FastAPI routes (which document them in the OpenAPI spec);
    FastAPI's per-request routing and dependency machinery cost about as much CPU as the engine on
    these two endpoints. Tests run both paths on the same inputs and require equal answers.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Mapping[Role, Secret],
        max_body: int,
        metrics: Metrics,
        fast: Mapping[str, FastRoute] | None = None,
    ) -> None:
        self.app = app
        self.tokens = dict(tokens)
        self.max_body = max_body
        self.metrics = metrics
        self.fast = dict(fast or {})

    async def _serve_fast(
        self, route: FastRoute, scope: Scope, receive: Receive, send: Send, ctype: bytes | None
    ) -> None:
        model, handler, ok_status = route
        chunks = []
        more = True
        try:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                more = bool(message.get("more_body", False))
            body = parse_body(model, b"".join(chunks), ctype)
            payload = json.dumps(
                await handler(body), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8")
            status = ok_status
            headers: list[tuple[str, str]] = []
        except Exception as exc:
            status, payload = exception_payload(exc, scope["path"])
            headers = error_headers(status)
        raw_headers = [
            (b"content-length", str(len(payload)).encode()),
            (b"content-type", b"application/json"),
            *((k.lower().encode(), v.encode()) for k, v in headers),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _serve_checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole body (already bounded by the size limit), refuse JSON nested deeper than
        :data:`MAX_JSON_DEPTH` with 400, and hand the body to the app unchanged."""
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        raw = b"".join(chunks)
        if json_too_deep(raw):
            exc = _too_deep()
            await self._refuse(send, 400, "BadRequest", str(exc.detail), "body")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, status: int, kind: str, message: str, field: str) -> None:
        body = error_body(kind, message, field)
        headers = [(b"content-type", _JSON.encode()), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]
        fast_label: list[str | None] = [None]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            auth = None
            n_auth = 0
            length = None
            ctype = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    auth = value
                    n_auth += 1
                elif name == b"content-length":
                    length = value
                elif name == b"content-type":
                    ctype = value
            fast = self.fast.get(scope["path"]) if scope["method"] == "POST" else None
            if not is_open(scope["method"], scope["path"]):
                if n_auth > 1:  # which one would count depends on the proxy: refuse both
                    await self._refuse(
                        send_wrapper,
                        400,
                        "BadRequest",
                        f"send one Authorization header, got {n_auth}",
                        "Authorization",
                    )
                    return
                roles = roles_of(auth, self.tokens)
                if not roles:
                    await self._refuse(
                        send_wrapper,
                        401,
                        "Unauthorized",
                        "missing or invalid bearer token",
                        "Authorization",
                    )
                    return
                need = role_for(scope["method"], scope["path"])
                if need not in roles:
                    await self._refuse(
                        send_wrapper,
                        403,
                        "Forbidden",
                        f"{scope['method']} {scope['path']} needs the {need} role's token",
                        "Authorization",
                    )
                    return
            if length is not None:
                try:
                    n = int(length)
                except ValueError:
                    n = -1
                if n < 0:
                    await self._refuse(
                        send_wrapper,
                        400,
                        "BadRequest",
                        "Content-Length must be a number >= 0",
                        "Content-Length",
                    )
                    return
                if n > self.max_body:
                    await self._refuse(
                        send_wrapper,
                        413,
                        "PayloadTooLarge",
                        f"request body must be at most {self.max_body} bytes, got {n}",
                        "body",
                    )
                    return
                if fast is not None:
                    fast_label[0] = scope["path"]
                    await self._serve_fast(fast, scope, receive, send_wrapper, ctype)
                    return
                if n > 0:
                    await self._serve_checked(scope, receive, send_wrapper)
                    return
                await self.app(scope, receive, send_wrapper)
                return
            seen = 0

            async def counting_receive() -> Message:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.max_body:
                        raise BodyTooLarge(self.max_body)
                return message

            if fast is not None:
                fast_label[0] = scope["path"]
                await self._serve_fast(fast, scope, counting_receive, send_wrapper, ctype)
                return
            if scope["method"] in ("POST", "PUT", "PATCH"):
                await self._serve_checked(scope, counting_receive, send_wrapper)
                return
            await self.app(scope, counting_receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = fast_label[0] or getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(label, status[0], time.perf_counter() - start)
