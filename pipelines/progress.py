"""Progress events from the flow to whoever is watching (the CLI's progress display, or nothing).

Flow parameters must be serialisable for Prefect, so the listener is registered here instead of passed in.
Events carry counts and ids only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Listener = Callable[[str, dict], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def emit(event: str, **data: object) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event, data)
