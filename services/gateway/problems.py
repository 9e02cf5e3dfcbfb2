"""Every error leaves the gateway as an RFC 9457 problem (application/problem+json)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from libs.bus import ServiceError
from libs.obs.logging import get_logger

__all__ = ["EXCEPTION_HANDLERS", "problem"]

log = get_logger("gateway")

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    code: str = "",
    instance: str = "",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    """A problem-details response; `code` becomes the `type` URN and a `code` member."""
    kind = code or _TITLES.get(status, "error").lower().replace(" ", "_")
    body: dict[str, Any] = {
        "type": f"urn:cpc-live:problem:{kind}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": kind,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _service_error(request: Request[Any, Any, Any], exc: ServiceError) -> Response[dict[str, Any]]:
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
    if exc.status >= 500:
        log.warning("service_error", path=request.url.path, code=exc.code, detail=exc.detail)
    return problem(
        exc.status,
        exc.detail,
        code=exc.code,
        instance=request.url.path,
        headers=headers,
        retry_after=exc.retry_after,
    )


def _validation_detail(exc: ValidationException) -> tuple[str, list[Any] | None]:
    extra = exc.extra if isinstance(exc.extra, list) else None
    if extra:
        parts = []
        for item in extra:
            if isinstance(item, dict):
                key = item.get("key") or item.get("source") or ""
                if key == "data" and item.get("message") == "'data'":
                    # Litestar's KeyError for a request without a body.
                    parts.append("request body is missing: send a JSON object")
                    continue
                parts.append(f"{key}: {item.get('message', '')}".strip(": "))
        if parts:
            return "; ".join(parts), extra
    return str(exc.detail), extra


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, ValidationException):
        detail, errors = _validation_detail(exc)
        return problem(400, detail, code="invalid_request", instance=request.url.path, errors=errors)
    status = exc.status_code
    detail = exc.detail or _TITLES.get(status, "error")
    if status == 413:
        detail = "request body is too large"
    if isinstance(exc.__cause__, SerializationException):
        # Litestar re-raises msgspec's "Input data was truncated" as is; say which input.
        return problem(
            status,
            f"request body is not valid JSON: {detail}",
            code="invalid_json",
            instance=request.url.path,
        )
    return problem(status, detail, instance=request.url.path, headers=exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled_error", path=request.url.path)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal error", instance=request.url.path)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ServiceError: _service_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
