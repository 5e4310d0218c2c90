"""The REST side: one aiohttp handler that records, injects faults, runs moment hooks, checks
uploads and auth, then dispatches to the route table of :mod:`.rest_resources` and
:mod:`.rest_interactions`."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .bodies import ParsedBody, parse_body
from .faults import (
    CHAOS,
    DROP_AFTER,
    DROP_BEFORE,
    QUEUED,
    Fault,
    InjectedFault,
    drop_connection,
    rate_limit_headers,
)
from .messages import StoredMessage
from .moments import APPLIED, RECEIVED, RESPONDED
from .recording import RecordedRequest
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
    """A per-route 429 as Discord sends it, which discord.py waits out and retries."""
    body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": False}
    return json_response(body, status=429, headers=rate_limit_headers(retry_after))


def fault_response(fault: Fault) -> web.Response:
    """The answer of a status fault: its ``body``, else a Discord-style error for its status."""
    if fault.body is not None:
        return json_response(fault.body, status=fault.status, headers=fault.headers)
    if fault.status == 429:
        return rate_limited(0.05 if fault.retry_after is None else fault.retry_after)
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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        double = self._double
        path = "/" + request.match_info["tail"]
        try:
            body = await parse_body(request)
        except ConnectionError as error:
            # The client vanished mid-upload (a killed bot): Discord never saw a whole request.
            # aiohttp raises ConnectionResetError for a cut-off body, whatever its encoding.
            log.debug("%s %s: the client went away while sending (%r)", request.method, path, error)
            return no_content()
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
        fault = self._fault(record)
        if fault is not None and fault.drop == DROP_BEFORE:
            return self._drop(request, record)
        await double.moments.fire(record, RECEIVED)
        if fault is not None and fault.drop is None:
            response = fault_response(fault)
            self._answered(record, response)
        else:
            response = await self._respond(request, route, ApiCall(double, request, params, body, record))
            self._answered(record, response)
            await double.moments.fire(record, APPLIED)
        if fault is not None and fault.drop == DROP_AFTER:
            return self._drop(request, record)
        await self._deliver(request, record, response)
        await double.moments.fire(record, RESPONDED)
        return response

    def _fault(self, record: RecordedRequest) -> Fault | None:
        """A queued fault for this call, else one from chaos; logged once chosen."""
        double = self._double
        fault, source = double.faults.take(record.method, record.path), QUEUED
        if fault is None and double.chaos_policy is not None:
            fault, source = double.chaos_policy.pick(record.method, record.path), CHAOS
        if fault is None:
            return None
        record.fault = fault.kind
        double.record_fault(
            InjectedFault(fault.kind, source, record.method, record.route, record.path, record.at, record)
        )
        log.info("injected %s (%s) into %s %s", fault.kind, source, record.method, record.path)
        return fault

    def _answered(self, record: RecordedRequest, response: web.Response) -> None:
        record.status = response.status
        if response.content_type == "application/json" and isinstance(response.body, bytes):
            record.response = json.loads(response.body)
        log.debug("%s %s -> %s", record.method, record.path, response.status)
        self._double.notifier.notify()

    def _drop(self, request: web.Request, record: RecordedRequest) -> web.Response:
        drop_connection(request.transport)
        record.delivered = False
        self._double.notifier.notify()
        return no_content()  # aiohttp finds the connection closed and sends nothing

    async def _deliver(self, request: web.Request, record: RecordedRequest, response: web.Response) -> None:
        """Send the answer now (not after the handler returns), so ``"responded"`` follows it."""
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            log.debug("%s %s: the client went away before its answer", record.method, record.path)
            record.delivered = False
        else:
            record.delivered = True
        self._double.notifier.notify()

    async def _respond(self, request: web.Request, route: ApiRoute | None, call: ApiCall) -> web.Response:
        double = self._double
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
