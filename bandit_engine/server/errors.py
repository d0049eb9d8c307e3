"""The one place where errors become HTTP statuses and JSON error bodies.

Every error response has the body ``{"error": <kind>, "message": <text>, "field": <name>?}``. The
message names the field and the bad value (the library's house shape) and never contains a secret, a
traceback or a raw SQL error. Mapping:

=====================================================  ======
``ValidationError``, ``ConfigError``, ``DataError``     422
invalid JSON body                                       400
request schema violations (unknown field, NaN/Inf ...)  422
missing or wrong bearer token                           401
``NotFoundError``, unknown route                        404
``ConflictError`` (for example a reused decision id)    409
body over the size limit                                413
service unavailable (storage busy or failing)           503
anything else (a bug)                                   500
=====================================================  ======
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..errors import (
    BanditError,
    ConfigError,
    ConflictError,
    DataError,
    ModelFileError,
    NotFoundError,
    ValidationError,
)

__all__ = [
    "HTTP_STATUS",
    "BodyTooLarge",
    "ServiceUnavailableError",
    "error_body",
    "error_response",
    "install_error_handlers",
    "status_for",
]

logger = logging.getLogger("bandit_engine.server")


class ServiceUnavailableError(Exception):
    """The server cannot serve right now (storage failing, engine being rebuilt); retry later."""


class BodyTooLarge(StarletteHTTPException):
    """A request body went over the size limit while it was being read (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body must be at most {limit} bytes")
        self.limit = limit


HTTP_STATUS: dict[type[BaseException], int] = {
    ValidationError: 422,
    ConfigError: 422,
    DataError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    ModelFileError: 500,
    ServiceUnavailableError: 503,
}


def status_for(exc: BaseException) -> int:
    """The HTTP status of an exception (the single error -> status mapping)."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    if isinstance(exc, sqlite3.OperationalError):
        return 503  # storage busy or failing: retryable, never reported as a client error
    return 500


def error_body(kind: str, message: str, field: str | None = None, **extra: Any) -> bytes:
    """The JSON bytes of an error response."""
    body: dict[str, Any] = {"error": kind, "message": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error_response(
    status: int, kind: str, message: str, field: str | None = None, **extra: Any
) -> Response:
    """A JSON error response."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return Response(
        error_body(kind, message, field, **extra),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _loc_name(loc: Any) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "path", "query", "header"):
        parts = parts[1:]
    return ".".join(parts) if parts else "body"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


async def _on_validation(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return error_response(400, "InvalidJSON", "request body is not valid JSON", "body")
    field = _loc_name(first.get("loc", ("body",)))
    msg = str(first.get("msg", "is invalid"))
    if kind == "extra_forbidden":
        message = f"{field} is not a known field"
    elif kind == "missing":
        message = f"{field} is required"
    elif kind == "value_error":
        message = f"{field} {msg.removeprefix('Value error, ')}"
    elif "input" in first and kind != "model_attributes_type":
        message = f"{field}: {msg}, got {_short(first['input'])}"
    else:
        message = f"{field}: {msg}"
    return error_response(
        422,
        "ValidationError",
        message,
        field,
        details=[
            {"field": _loc_name(e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in errors[:10]
        ],
    )


async def _on_http(request: Request, exc: StarletteHTTPException) -> Response:
    names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 400: "BadRequest"}
    kind = names.get(exc.status_code, "HTTPError")
    field = "body" if exc.status_code in (400, 413) else None
    message = f"no endpoint {request.url.path!r}" if exc.status_code == 404 else str(exc.detail)
    return error_response(exc.status_code, kind, message, field)


async def _on_bandit(request: Request, exc: BanditError) -> Response:
    body = exc.to_dict()
    status = status_for(exc)
    if status >= 500:
        logger.error("%s on %s: %s", type(exc).__name__, request.url.path, exc.message)
    return error_response(
        status,
        body["error"],
        body["message"],
        body.get("field"),
        **({"value": body["value"]} if "value" in body else {}),
    )


async def _on_unavailable(request: Request, exc: ServiceUnavailableError) -> Response:
    return error_response(503, "ServiceUnavailableError", str(exc) or "retry later")


async def _on_other(request: Request, exc: Exception) -> Response:
    status = status_for(exc)
    if status == 503:
        logger.warning("storage busy on %s: %s", request.url.path, type(exc).__name__)
        return error_response(503, "ServiceUnavailableError", "storage is busy, retry later")
    # a bug: log the type and place, answer without internals
    logger.error("internal error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
    return error_response(500, "InternalError", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that apply :func:`status_for` to every error."""
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http)  # type: ignore[arg-type]
    app.add_exception_handler(BanditError, _on_bandit)  # type: ignore[arg-type]
    app.add_exception_handler(ServiceUnavailableError, _on_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_other)
