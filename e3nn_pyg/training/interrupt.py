r"""Ctrl-C during training, taken at the next safe point.

The first Ctrl-C (SIGINT) only records the request: the loop finishes the step in flight
(an optimizer step interrupted half-way would leave parameters and optimizer state out of
step), saves everything a resume needs, and stops. A second Ctrl-C stops at once, without
saving (the last checkpoint stays). Outside the main thread, where Python cannot install
signal handlers, Ctrl-C keeps its default behaviour.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

__all__ = ["DeferredInterrupt"]


class DeferredInterrupt:
    """Context manager: ``requested`` turns true on the first Ctrl-C inside the block."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
