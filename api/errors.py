"""Every error the API returns has one shape: ``{"error": <stable id>, "message": ..., "details": {...}}``.

``error`` comes from :class:`intake.errors.IzsError.error_id` (plus the few ids only the API raises,
below), so integrations can branch on it; the HTTP status comes from ``http_status``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from intake.errors import Conflict, IzsError

log = logging.getLogger(__name__)


class Unauthenticated(IzsError):
    error_id = "unauthenticated"
    http_status = 401


class IdempotencyConflict(Conflict):
    error_id = "idempotency_conflict"


HTTP_ERROR_IDS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
}


def error_body(error_id: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": error_id, "message": message, "details": details or {}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(getattr(value, "value", value))


def izs_error_response(exc: IzsError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else {}
    if "retry_after_s" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after_s"])
    return JSONResponse(
        error_body(exc.error_id, exc.message, _jsonable(exc.details)),
        status_code=exc.http_status,
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_izs_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, IzsError)
        if exc.http_status >= 500:
            log.error("%s %s failed: %s (%s)", request.method, request.url.path, exc.error_id, exc.message)
        return izs_error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body("validation_failed", "the request is not valid", {"errors": problems}), status_code=422
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        error_id = HTTP_ERROR_IDS.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(error_id, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    app.add_exception_handler(IzsError, on_izs_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
