"""RFC 9457 problem+json errors: a typed base every service subclasses, and the one handler."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.request_context import current_request_id, request_id_var

PROBLEM_CONTENT_TYPE = "application/problem+json"
logger = logging.getLogger("shared.errors")


class ProblemDetail(BaseModel):
    """The body of every error response (documented in each service's OpenAPI)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class BadRequest(ProblemError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class Unauthorized(ProblemError):
    status = 401
    code = "missing_token"
    title = "Authentication required"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(ProblemError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidState(Conflict):
    code = "invalid_state"
    title = "Not allowed in the current state"


class PayloadTooLarge(ProblemError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class ValidationFailed(ProblemError):
    status = 422
    code = "validation_error"
    title = "Validation failed"

    def __init__(self, detail: str, *, loc: Sequence[str | int] = ()) -> None:
        super().__init__(detail, extra={"errors": [{"loc": list(loc), "msg": detail}]})


class TooManyRequests(ProblemError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(ProblemError):
    status = 503
    code = "upstream_unavailable"
    title = "Service unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """MySQL cannot be reached, or dropped the connection under a statement: nothing was
    decided, and the client may retry (connections are not pinged before use)."""

    title = "Database unavailable"

    def __init__(self) -> None:
        super().__init__("The database did not answer; retry shortly.",
                         headers={"Retry-After": "1"})


def problem_document(status: int, code: str, title: str, detail: str,
                     extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The body of every error, for whoever renders it (FastAPI handlers, the gateway's ASGI)."""
    body: dict[str, Any] = {
        "type": f"urn:preorder:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": current_request_id(),
    }
    if extra:
        body.update(extra)
    return body


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(problem_document(status, code, title, detail, extra),
                        status_code=status, headers=dict(headers or {}),
                        media_type=PROBLEM_CONTENT_TYPE)


def problem_from_error(error: ProblemError) -> JSONResponse:
    return problem_response(error.status, error.code, error.title, error.detail,
                            headers=error.headers, extra=error.extra)


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("missing_token", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    408: ("request_timeout", "Request timeout"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    500: ("internal_error", "Internal server error"),
    502: ("upstream_unavailable", "Bad gateway"),
    503: ("upstream_unavailable", "Service unavailable"),
    504: ("upstream_timeout", "Gateway timeout"),
}


def status_title(status: int) -> str:
    """The title of a problem whose class is known only by its status (the gateway's answers)."""
    return _HTTP_CODES.get(status, ("http_error", "Error"))[1]


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        out.append({"loc": loc, "msg": str(err.get("msg", "invalid"))})
    return out


async def _handle_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    if exc.status >= 500:
        # A refusal is the client's business; a 5xx is ours, and an operator needs its cause.
        logger.warning("answered %s %s", exc.status, exc.code,
                       extra={"detail": exc.detail, "cause": repr(exc.__cause__)})
    return problem_from_error(exc)


async def _handle_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors)
    return problem_response(422, "validation_error", "Validation failed", detail[:1000],
                            extra={"errors": errors})


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's only 400 is a body it could not even decode (not UTF-8, say): to clients
        # that is malformed input like any other, the contract's 422 validation_error.
        message = "The body is not valid JSON."
        return problem_response(422, "validation_error", "Validation failed", message,
                                extra={"errors": [{"loc": ["body"], "msg": message}]})
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(sorted(_allowed_methods(request)))}
    return problem_response(exc.status_code, code, title, detail, headers=headers)


def _allowed_methods(request: Request) -> set[str]:
    """Every method some route takes at this path. FastAPI makes one route per method, and
    Starlette's own Allow names only those of the first route whose path matched."""
    allowed: set[str] = set()
    for route in request.app.router.routes:
        methods = getattr(route, "methods", None)
        if methods and route.matches(request.scope)[0] != Match.NONE:
            allowed |= set(methods)
    return allowed


class RedisUnavailable(ServiceUnavailable):
    """Redis cannot be reached or did not answer in time (a restart, a failover): the request
    could not be decided, and the client may retry."""

    def __init__(self) -> None:
        super().__init__("A data store did not answer; retry shortly.",
                         headers={"Retry-After": "1"})


def problem_of(error: Exception) -> ProblemError:
    """The problem the handlers below answer `error` with, for a part of a request answered on
    its own (one reserve of a batch): a ProblemError as it is, a data store out of reach as
    503, anything else as 500; a 5xx logged with its cause, as the handlers log it."""
    problem: ProblemError
    if isinstance(error, ProblemError):
        problem = error
    elif isinstance(error, RedisConnectionError | RedisTimeoutError):
        problem = RedisUnavailable()
    elif isinstance(error, PoolTimeout) or _database_unreachable(error):
        problem = DatabaseUnavailable()
    else:
        logger.error("unhandled error", exc_info=error)
        return ProblemError("The server could not complete the request.")
    if problem.status >= 500:
        logger.warning("answered %s %s", problem.status, problem.code,
                       extra={"detail": problem.detail,
                              "cause": repr(error.__cause__ if problem is error else error)})
    return problem


def unexpected_error_response(headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The 500 of an error nobody expected: no detail of it leaves the process."""
    return problem_response(500, "internal_error", "Internal server error",
                            "The server could not complete the request.", headers=headers)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette answers this from its outermost layer, after the request-id middleware has
    # finished: the id is taken from the scope and the header set here, or the 500 would lack both.
    request_id = request.scope.get("state", {}).get("request_id")
    token = request_id_var.set(request_id)
    try:
        logger.exception("unhandled error", exc_info=exc)
        return unexpected_error_response({"X-Request-Id": request_id} if request_id else None)
    finally:
        request_id_var.reset(token)


def _database_unreachable(error: Exception) -> bool:
    """The database could not be asked, or dropped the connection under a statement: nothing
    was decided (a statement it refused is not this)."""
    return isinstance(error, DBAPIError) and (
        error.connection_invalidated or isinstance(error, OperationalError))


async def _handle_database(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if _database_unreachable(exc):
        logger.warning("database unavailable", extra={"error": repr(exc.orig)})
        return problem_from_error(DatabaseUnavailable())
    logger.exception("unhandled database error", exc_info=exc)
    return problem_response(500, "internal_error", "Internal server error",
                            "The server could not complete the request.")


async def _handle_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    # Every pooled connection stayed busy past the pool's wait: as undecided as a database out
    # of reach, and as worth a retry.
    logger.warning("no database connection free in time", extra={"error": str(exc)})
    return problem_from_error(DatabaseUnavailable())


async def _handle_redis_unreachable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("redis unavailable", extra={"error": repr(exc)})
    return problem_from_error(RedisUnavailable())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(DBAPIError, _handle_database)
    app.add_exception_handler(PoolTimeout, _handle_pool_timeout)
    # Only "could not reach it": a script error or a wrong type is a bug and stays a 500.
    app.add_exception_handler(RedisConnectionError, _handle_redis_unreachable)
    app.add_exception_handler(RedisTimeoutError, _handle_redis_unreachable)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(Exception, _handle_unexpected)


def problem_responses(*errors: type[ProblemError]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route, so the OpenAPI document lists the problems it can answer."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = out.setdefault(error.status, {
            "model": ProblemDetail,
            "content": {PROBLEM_CONTENT_TYPE: {}},
            "description": "",
        })
        entry["description"] = ", ".join(filter(None, [entry["description"], f"`{error.code}`"]))
    return out
