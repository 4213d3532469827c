"""Herald's server-side client: publish events, mint subscriber tokens, read history.

``Herald`` is the synchronous client and ``AsyncHerald`` the same as coroutines. A publish that
is answered 429 or 503, or that fails in transport, is sent again after ``Retry-After`` (or a
short back-off) with the same ``Idempotency-Key``, within a bounded budget; errors are
``HeraldError`` with ``.status`` and ``.code``.
"""

from ._client import (
    AsyncHerald,
    BatchEvent,
    ChannelInfo,
    Herald,
    HeraldError,
    HistoryEvent,
    HistoryPage,
    Published,
    Retry,
    Token,
)

__all__ = [
    "AsyncHerald",
    "BatchEvent",
    "ChannelInfo",
    "Herald",
    "HeraldError",
    "HistoryEvent",
    "HistoryPage",
    "Published",
    "Retry",
    "Token",
]
