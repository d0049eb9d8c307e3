"""The one place where errors become HTTP statuses and JSON error bodies.

Every error response has the body ``{"error": <kind>, "message": <text>, "field": <name>?}``. The
message names the field and the bad value (the library's house shape) and never contains a secret, a
traceback or a raw SQL error. Mapping:

=====================================================  ======
``ValidationError``, ``ConfigError``, ``DataError``     422
invalid JSON body, JSON nested over 32 levels            400
two Authorization headers                               400
request schema violations (unknown field, NaN/Inf ...)  422
missing or wrong bearer token                           401
a valid token of another role (decide / read / admin)   403
``NotFoundError``, unknown route                        404
``ConflictError`` (for example a reused decision id)    409
``NoOfferError`` (the rules' no-offer fallback)        200, with ``"offer": false`` and ``reason``
body over the size limit                                413
service unavailable (storage busy or failing)           503
anything else (a bug)                                   500
=====================================================  ======
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
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
    NoOfferError,
    NotFoundError,
    StoreBusyError,
    ValidationError,
    lookup_by_type,
)

__all__ = [
    "HTTP_STATUS",
    "BodyTooLarge",
    "ServiceUnavailableError",
    "error_body",
    "error_headers",
    "error_response",
    "exception_payload",
    "install_error_handlers",
    "status_for",
    "validation_payload",
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
    NoOfferError: 200,  # an explicit no-offer decision of the rules' fallback, not a failure
    ModelFileError: 500,
    ServiceUnavailableError: 503,
    StoreBusyError: 503,  # storage busy or failing: retryable, never reported as a client error
}


def status_for(exc: BaseException) -> int:
    """The HTTP status of an exception (the single error -> status mapping)."""
    return lookup_by_type(exc, HTTP_STATUS, 500)


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
    return Response(
        error_body(kind, message, field, **extra),
        status_code=status,
        media_type="application/json",
        headers=dict(error_headers(status)) or None,
    )


def error_headers(status: int) -> list[tuple[str, str]]:
    """Extra headers of an error response."""
    if status == 401:
        return [("WWW-Authenticate", "Bearer")]
    if status == 503:
        return [("Retry-After", "1")]
    return []


def _loc_name(loc: Any) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "path", "query", "header"):
        parts = parts[1:]
    return ".".join(parts) if parts else "body"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validation_payload(errors: Sequence[Any]) -> tuple[int, bytes]:
    """Status and body for request-schema errors (pydantic error dicts, ``loc`` from the body)."""
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return 400, error_body("InvalidJSON", "request body is not valid JSON", "body")
    field = _loc_name(first.get("loc", ("body",)))
    msg = str(first.get("msg", "is invalid"))
    if field == "body" and kind in ("model_type", "model_attributes_type", "dict_type"):
        # pydantic words this differently depending on how it was called: say it one way
        message = "body must be a JSON object sent as Content-Type application/json"
        details = [{"field": "body", "message": message}]
        return 422, error_body("ValidationError", message, "body", details=details)
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
    details = [
        {"field": _loc_name(e.get("loc", ())), "message": str(e.get("msg", ""))}
        for e in errors[:10]
    ]
    return 422, error_body("ValidationError", message, field, details=details)


def exception_payload(exc: BaseException, path: str) -> tuple[int, bytes]:
    """Status and body for any exception raised while serving ``path`` (logs 5xx causes)."""
    if isinstance(exc, RequestValidationError):
        return validation_payload(exc.errors())
    if isinstance(exc, StarletteHTTPException):
        names = {
            404: "NotFound",
            405: "MethodNotAllowed",
            413: "PayloadTooLarge",
            400: "BadRequest",
        }
        kind = names.get(exc.status_code, "HTTPError")
        field = "body" if exc.status_code in (400, 413) else None
        message = f"no endpoint {path!r}" if exc.status_code == 404 else str(exc.detail)
        return exc.status_code, error_body(kind, message, field)
    if isinstance(exc, StoreBusyError):
        # another process held the write lock past busy_timeout, or the disk failed: retryable;
        # the message names the database file, which is the operator's business, not the client's
        logger.warning("storage unavailable on %s: %s", path, exc.message)
        return 503, error_body("ServiceUnavailable", "storage is busy, retry later")
    if isinstance(exc, BanditError):
        body = exc.to_dict()
        status = status_for(exc)
        if status >= 500:
            logger.error("%s on %s: %s", type(exc).__name__, path, exc.message)
        extra: dict[str, Any] = {"value": body["value"]} if "value" in body else {}
        if isinstance(exc, NoOfferError):
            extra = {"offer": False, "reason": exc.reason}
        return status, error_body(body["error"], body["message"], body.get("field"), **extra)
    if isinstance(exc, ServiceUnavailableError):
        return 503, error_body("ServiceUnavailable", str(exc) or "retry later")
    # a bug: log the type and place, answer without internals
    logger.error("internal error on %s: %s", path, type(exc).__name__, exc_info=exc)
    return 500, error_body("InternalError", "internal server error")


async def _handle(request: Request, exc: Exception) -> Response:
    status, body = exception_payload(exc, request.url.path)
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers=dict(error_headers(status)) or None,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register :func:`exception_payload` as the handler of every error."""
    for cls in (
        RequestValidationError,
        StarletteHTTPException,
        BanditError,
        ServiceUnavailableError,
    ):
        app.add_exception_handler(cls, _handle)
    app.add_exception_handler(Exception, _handle)
