"""The REST side: one aiohttp handler that records, injects faults, checks uploads and auth,
then dispatches to the route table of :mod:`.rest_resources` and :mod:`.rest_interactions`."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .bodies import ParsedBody, parse_body
from .messages import StoredMessage
from .recording import Fault, RecordedRequest
from .routing import match_path, method_matches

if TYPE_CHECKING:
    from .server import DiscordDouble

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"


class ApiError(Exception):
    """A Discord error answer: HTTP status, Discord's JSON error code and message."""

    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body = {"message": message, "code": code, **extra}

    def response(self) -> web.Response:
        return json_response(self.body, status=self.status)


def unknown(what: str, code: int) -> ApiError:
    return ApiError(404, code, f"Unknown {what}")


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with a Content-Type of exactly ``application/json`` (discord.py compares the header
    verbatim; aiohttp's ``json_response`` would add ``; charset=utf-8``)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def rate_limited(retry_after: float) -> web.Response:
    """A 429 discord.py honours: it only retries when the ``Via`` header is present."""
    body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": False}
    return json_response(body, status=429, headers={"Via": "1.1 google", "Retry-After": str(retry_after)})


def fault_response(fault: Fault) -> web.Response:
    if fault.body is not None:
        return json_response(fault.body, status=fault.status, headers=fault.headers)
    if fault.status == 429:
        return rate_limited(0.05)
    if fault.status == 413:
        return ApiError(413, 40005, "Request entity too large").response()
    try:
        reason = HTTPStatus(fault.status).phrase
    except ValueError:
        reason = "Error"
    return json_response(
        {"message": f"{fault.status}: {reason}", "code": 0}, status=fault.status, headers=fault.headers
    )


@dataclass
class ApiCall:
    """What a route handler gets: the double, the path captures and the parsed body."""

    double: DiscordDouble
    request: web.Request
    params: dict[str, str]
    body: ParsedBody
    record: RecordedRequest

    @property
    def json(self) -> dict[str, Any]:
        return self.body.json if isinstance(self.body.json, dict) else {}

    def snowflake(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise ApiError(
                400, 50035, "Invalid Form Body", errors={name: "Value is not snowflake."}
            ) from None

    def flag(self, name: str) -> bool:
        return self.request.query.get(name, "").lower() in ("1", "true")

    def check_edit_spacing(self, message: StoredMessage) -> None:
        """Record an edit that follows the previous one too soon; answer 429 if enforced."""
        double = self.double
        if double.min_edit_interval is None or not message.edit_times:
            return
        elapsed = double.clock.now() - message.edit_times[-1]
        if elapsed >= double.min_edit_interval:
            return
        double.record_violation(message, elapsed, self.record)
        if double.enforce_edit_interval:
            raise _RateLimited(double.min_edit_interval - elapsed)


class _RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


Handler = Callable[[ApiCall], Awaitable[web.Response]]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    template: str
    handler: Handler
    bot_auth: bool = True  # webhook and interaction-callback routes authenticate by token instead


class ApiRouter:
    def __init__(self, double: DiscordDouble, routes: list[ApiRoute]) -> None:
        self._double = double
        self._routes = routes

    def resolve(self, method: str, path: str) -> tuple[ApiRoute | None, dict[str, str]]:
        for route in self._routes:
            if not method_matches(route.method, method):
                continue
            params = match_path(route.template, path)
            if params is not None:
                return route, params
        return None, {}

    async def handle(self, request: web.Request) -> web.Response:
        double = self._double
        path = "/" + request.match_info["tail"]
        body = await parse_body(request)
        route, params = self.resolve(request.method, path)
        record = RecordedRequest(
            method=request.method,
            path=path,
            route=route.template if route else None,
            params=params,
            query=dict(request.query),
            headers=dict(request.headers),
            json=body.json,
            files=body.files,
            at=double.clock.now(),
        )
        double.record_request(record)
        response = await self._respond(request, route, ApiCall(double, request, params, body, record))
        record.status = response.status
        if response.content_type == "application/json" and isinstance(response.body, bytes):
            record.response = json.loads(response.body)
        log.debug("%s %s -> %s", request.method, path, response.status)
        double.notifier.notify()
        return response

    async def _respond(self, request: web.Request, route: ApiRoute | None, call: ApiCall) -> web.Response:
        double = self._double
        fault = double.faults.take(request.method, call.record.path)
        if fault is not None:
            return fault_response(fault)
        if any(upload.size > double.upload_limit for upload in call.body.files):
            return ApiError(413, 40005, "Request entity too large").response()
        if route is None:
            return json_response({"message": "Unknown", "code": 0}, status=404)
        if route.bot_auth and not double.accepts(request.headers.get("Authorization")):
            return json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        try:
            return await route.handler(call)
        except ApiError as error:
            return error.response()
        except _RateLimited as limited:
            return rate_limited(limited.retry_after)
        except Exception as error:
            # A bug in the double: answer 400 (a 5xx would make discord.py retry for seconds).
            log.exception("discord double failed on %s %s", request.method, call.record.path)
            double.internal_errors.append(error)
            return json_response({"message": f"discord double error: {error!r}", "code": 0}, status=400)
