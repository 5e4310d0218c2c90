"""Moments: hooks that run at precise points of a REST call, so a test can act there (kill the
bot process, say) while the call waits.

Every call the double answers passes through these phases, in order:

- ``"received"``: the whole request has arrived and been recorded; nothing is applied yet.
- ``"applied"``: the route handler ran (the message exists, the callback is accepted, or the
  call was refused: see ``request.status``); the answer has not been sent.
- ``"responded"``: the answer was handed to the client's socket (``request.delivered``).

A call hit by an injected fault stops early: ``drop_before`` reaches no phase; a status fault
(500, 429, ...) reaches ``"received"`` and ``"responded"`` but is never ``"applied"``;
``drop_after`` reaches ``"received"`` and ``"applied"``. A hook that awaits holds the call at
that phase: the double applies nothing and answers nothing for it meanwhile.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from .interactions import DEFAULT_TIMEOUT
from .recording import RecordedRequest

log = logging.getLogger(__name__)

RECEIVED = "received"
APPLIED = "applied"
RESPONDED = "responded"
PHASES = (RECEIVED, APPLIED, RESPONDED)

MomentCallback = Callable[[RecordedRequest, str], Awaitable[None] | None]
RequestFilter = Callable[[RecordedRequest], bool]

CHANNEL_MESSAGES = "/channels/{channel_id}/messages"
WEBHOOK_EXECUTE = "/webhooks/{webhook_id}/{webhook_token}"
INTERACTION_CALLBACK = "/interactions/{interaction_id}/{interaction_token}/callback"


def is_file_post(request: RecordedRequest) -> bool:
    """A new message with at least one file: a channel message or a webhook execute (follow-up)."""
    return bool(request.files) and (
        request.matches("POST", CHANNEL_MESSAGES) or request.matches("POST", WEBHOOK_EXECUTE)
    )


def is_file_upload(request: RecordedRequest) -> bool:
    """Any call that carries a file: new messages, edits (``edit_original_response``), callbacks."""
    return bool(request.files)


def is_interaction_callback(request: RecordedRequest) -> bool:
    """``POST /interactions/{id}/{token}/callback``: a response, a deferral, a modal, ..."""
    return request.matches("POST", INTERACTION_CALLBACK)


@dataclass
class _Hook:
    callback: MomentCallback
    phases: frozenset[str]
    when: RequestFilter | None


class MomentHooks:
    """The hooks of one double, run in the order they were added; a hook that raises is logged
    and handed to ``on_error`` (the double counts it as an internal error)."""

    def __init__(self, on_error: Callable[[Exception], None]) -> None:
        self._hooks: list[_Hook] = []
        self._holds: list[Hold] = []
        self._on_error = on_error

    def add(
        self,
        callback: MomentCallback,
        *,
        phases: Iterable[str] | None = None,
        when: RequestFilter | None = None,
    ) -> Callable[[], None]:
        """Run ``callback(request, phase)`` (sync or async) at ``phases`` (default: all) of the
        calls ``when`` accepts (default: all). Returns a function that removes the hook."""
        chosen = frozenset(PHASES if phases is None else phases)
        if not chosen or chosen - set(PHASES):
            raise ValueError(f"phases must be some of {PHASES}, not {sorted(chosen)}")
        hook = _Hook(callback, chosen, when)
        self._hooks.append(hook)

        def remove() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)

        return remove

    def hold(self, phase: str, when: RequestFilter | None = None, *, count: int = 1) -> Hold:
        """Stop the next ``count`` calls ``when`` accepts at ``phase`` until released."""
        hold = Hold(self, phase, when, count)
        self._holds.append(hold)
        return hold

    def clear(self) -> None:
        """Remove every hook and release every hold."""
        self.release_all()
        self._hooks.clear()

    def release_all(self) -> None:
        for hold in self._holds:
            hold.release()
        self._holds.clear()

    async def fire(self, request: RecordedRequest, phase: str) -> None:
        """Run the hooks for ``request`` at ``phase``, one after the other."""
        for hook in list(self._hooks):
            if phase not in hook.phases or (hook.when is not None and not hook.when(request)):
                continue
            try:
                result = hook.callback(request, phase)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:
                log.exception("a moment hook failed at %s of %s %s", phase, request.method, request.path)
                self._on_error(error)


class Hold:
    """Holds matching calls at one phase: :meth:`wait` returns each as it arrives there, and
    it stays there until :meth:`release` (or the end of an ``async with`` block)."""

    def __init__(self, hooks: MomentHooks, phase: str, when: RequestFilter | None, count: int) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.phase = phase
        self.held: list[RecordedRequest] = []
        self._remaining = count
        self._arrived: asyncio.Queue[RecordedRequest] = asyncio.Queue()
        self._released = asyncio.Event()
        self._remove = hooks.add(self._stop, phases=[phase], when=when)

    async def _stop(self, request: RecordedRequest, phase: str) -> None:
        if self._remaining <= 0 or self._released.is_set():
            return
        self._remaining -= 1
        if self._remaining == 0:
            self._remove()
        self.held.append(request)
        self._arrived.put_nowait(request)
        await self._released.wait()

    async def wait(self, timeout: float = DEFAULT_TIMEOUT) -> RecordedRequest:
        """The next call held here, once it has arrived."""
        try:
            return await asyncio.wait_for(self._arrived.get(), timeout)
        except asyncio.TimeoutError:
            what = f"a call to hold at {self.phase}"
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from None

    def release(self) -> None:
        """Let every held call go on, and hold no more."""
        self._remove()
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
