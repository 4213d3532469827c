from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, TypedDict
from urllib.parse import quote

import httpx


class HeraldError(Exception):
    """An error answer of Herald (problem+json), or a request that got no answer (status 0)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        retry_after: Optional[float] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.request_id = request_id


@dataclass(frozen=True)
class Retry:
    """How persistently a request is retried on 429, 503 and transport failures."""

    max_attempts: int = 5
    """Attempts in all, the first included; 1 means no retry."""
    max_wait: float = 30.0
    """Seconds spent waiting between attempts, in all; a longer ``Retry-After`` is raised at once."""


NO_RETRY = Retry(max_attempts=1, max_wait=0.0)


@dataclass(frozen=True)
class Published:
    channel: str
    id: str


class BatchEvent(TypedDict, total=False):
    channel: str
    event: str
    data: Any


@dataclass(frozen=True)
class Token:
    token: str
    expires_at: str
    """RFC 3339."""


@dataclass(frozen=True)
class HistoryEvent:
    id: str
    event: str
    data: Any


@dataclass(frozen=True)
class HistoryPage:
    events: List[HistoryEvent]
    gap: Optional[str] = None
    """``history_truncated`` or ``invalid_cursor`` when the page does not follow ``after`` exactly."""

    @property
    def next_after(self) -> Optional[str]:
        """The cursor to ask for the next page with; ``None`` when this page is empty."""
        return self.events[-1].id if self.events else None


@dataclass(frozen=True)
class ChannelInfo:
    channel: str
    subscribers: int
    last_event_id: Optional[str]
    retained: int


@dataclass
class _Request:
    method: str
    path: str
    json: Any = None
    params: Dict[str, str] = field(default_factory=dict)
    idempotency_key: Optional[str] = None


class _Base:
    def __init__(self, base_url: str, tenant: str, key: str, retry: Optional[Retry]) -> None:
        self._base = base_url.rstrip("/")
        self._tenant = tenant
        self._key = key
        self._retry = retry or Retry()

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self._base!r}, {self._tenant!r})"

    def _url(self, path: str) -> str:
        return f"{self._base}/v1/{_seg(self._tenant)}{path}"

    def _headers(self, req: _Request) -> Dict[str, str]:
        headers = {"authorization": f"Bearer {self._key}"}
        if req.idempotency_key is not None:
            headers["idempotency-key"] = req.idempotency_key
        return headers

    # Request builders, shared by both clients.
    @staticmethod
    def _publish(channel: str, data: Any, event: Optional[str], key: Optional[str]) -> _Request:
        body: Dict[str, Any] = {"data": data}
        if event is not None:
            body["event"] = event
        return _Request("POST", f"/channels/{_seg(channel)}/events", body, idempotency_key=key or _new_key())

    @staticmethod
    def _batch(events: Sequence[Mapping[str, Any]], key: Optional[str]) -> _Request:
        return _Request("POST", "/events", {"events": list(events)}, idempotency_key=key or _new_key())

    @staticmethod
    def _mint(channels: Sequence[str], ttl_seconds: Optional[int], sub: Optional[str]) -> _Request:
        body: Dict[str, Any] = {"channels": list(channels)}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        if sub is not None:
            body["sub"] = sub
        return _Request("POST", "/tokens", body)

    @staticmethod
    def _history(channel: str, after: Optional[str], limit: Optional[int]) -> _Request:
        params: Dict[str, str] = {}
        if after is not None:
            params["after"] = after
        if limit is not None:
            params["limit"] = str(limit)
        return _Request("GET", f"/channels/{_seg(channel)}/history", params=params)

    def _next_wait(self, error: HeraldError, attempt: int, started: float) -> Optional[float]:
        """Seconds to wait before the next attempt, or ``None`` to raise ``error``."""
        if error.status not in (0, 429, 503) or attempt >= self._retry.max_attempts:
            return None
        wait = error.retry_after if error.retry_after is not None else min(0.25 * 2 ** (attempt - 1), 4.0)
        if time.monotonic() - started + wait > self._retry.max_wait:
            return None
        return wait


class Herald(_Base):
    """A synchronous client of one tenant, with an API key (``hk_...``)."""

    def __init__(
        self,
        base_url: str,
        tenant: str,
        key: str,
        *,
        retry: Optional[Retry] = None,
        http: Optional[httpx.Client] = None,
    ) -> None:
        super().__init__(base_url, tenant, key, retry)
        self._http = http or httpx.Client(timeout=30.0)

    def __enter__(self) -> "Herald":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def publish(
        self, channel: str, data: Any, event: Optional[str] = None, idempotency_key: Optional[str] = None
    ) -> Published:
        """Publishes ``data`` (any JSON value) to ``channel``."""
        return Published(**self._send(self._publish(channel, data, event, idempotency_key)))

    def publish_batch(self, events: Sequence[Mapping[str, Any]], idempotency_key: Optional[str] = None) -> List[Published]:
        """Publishes 1 to 100 events (``{"channel", "event"?, "data"}``), all or nothing."""
        return [Published(**r) for r in self._send(self._batch(events, idempotency_key))["results"]]

    def mint_token(self, channels: Sequence[str] = (), ttl_seconds: Optional[int] = None, sub: Optional[str] = None) -> Token:
        """Mints a subscriber token (the key needs the ``subscribe`` scope)."""
        return Token(**self._send(self._mint(channels, ttl_seconds, sub)))

    def history(self, channel: str, after: Optional[str] = None, limit: Optional[int] = None) -> HistoryPage:
        """One page of history, oldest first; page on with ``page.next_after``."""
        return _page(self._send(self._history(channel, after, limit)))

    def channel(self, channel: str) -> ChannelInfo:
        """A channel's subscribers, last event id and retained count."""
        return ChannelInfo(**self._send(_Request("GET", f"/channels/{_seg(channel)}")))

    def _send(self, req: _Request) -> Any:
        started, attempt = time.monotonic(), 1
        while True:
            try:
                response = self._http.request(
                    req.method, self._url(req.path), json=req.json, params=req.params, headers=self._headers(req)
                )
                return _read(response)
            except (HeraldError, httpx.TransportError) as caught:
                error = _as_error(caught)
            wait = self._next_wait(error, attempt, started)
            if wait is None:
                raise error
            time.sleep(wait)
            attempt += 1


class AsyncHerald(_Base):
    """``Herald`` with coroutines, on ``httpx.AsyncClient``."""

    def __init__(
        self,
        base_url: str,
        tenant: str,
        key: str,
        *,
        retry: Optional[Retry] = None,
        http: Optional[httpx.AsyncClient] = None,
    ) -> None:
        super().__init__(base_url, tenant, key, retry)
        self._http = http or httpx.AsyncClient(timeout=30.0)

    async def __aenter__(self) -> "AsyncHerald":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def publish(
        self, channel: str, data: Any, event: Optional[str] = None, idempotency_key: Optional[str] = None
    ) -> Published:
        return Published(**await self._send(self._publish(channel, data, event, idempotency_key)))

    async def publish_batch(self, events: Sequence[Mapping[str, Any]], idempotency_key: Optional[str] = None) -> List[Published]:
        return [Published(**r) for r in (await self._send(self._batch(events, idempotency_key)))["results"]]

    async def mint_token(self, channels: Sequence[str] = (), ttl_seconds: Optional[int] = None, sub: Optional[str] = None) -> Token:
        return Token(**await self._send(self._mint(channels, ttl_seconds, sub)))

    async def history(self, channel: str, after: Optional[str] = None, limit: Optional[int] = None) -> HistoryPage:
        return _page(await self._send(self._history(channel, after, limit)))

    async def channel(self, channel: str) -> ChannelInfo:
        return ChannelInfo(**await self._send(_Request("GET", f"/channels/{_seg(channel)}")))

    async def _send(self, req: _Request) -> Any:
        started, attempt = time.monotonic(), 1
        while True:
            try:
                response = await self._http.request(
                    req.method, self._url(req.path), json=req.json, params=req.params, headers=self._headers(req)
                )
                return _read(response)
            except (HeraldError, httpx.TransportError) as caught:
                error = _as_error(caught)
            wait = self._next_wait(error, attempt, started)
            if wait is None:
                raise error
            await asyncio.sleep(wait)
            attempt += 1


def _read(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    retry_after: Optional[float] = None
    header = response.headers.get("retry-after", "").strip()
    if header.isdigit():
        retry_after = float(header)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    status = response.status_code
    fallback = "rate_limited" if status == 429 else "unavailable" if 502 <= status <= 504 else "http_error"
    raise HeraldError(
        status,
        str(body.get("code") or fallback),
        str(body.get("detail") or body.get("title") or response.reason_phrase),
        retry_after,
        body.get("request_id") or response.headers.get("x-request-id"),
    )


def _as_error(caught: Exception) -> HeraldError:
    """A transport failure is status 0, ``network_error``: the request may not have arrived."""
    if isinstance(caught, HeraldError):
        return caught
    return HeraldError(0, "network_error", f"request to Herald failed: {caught!r}")


def _page(body: Dict[str, Any]) -> HistoryPage:
    return HistoryPage([HistoryEvent(**e) for e in body["events"]], body.get("gap"))


def _seg(segment: str) -> str:
    return quote(segment, safe=":@")


def _new_key() -> str:
    return uuid.uuid4().hex
