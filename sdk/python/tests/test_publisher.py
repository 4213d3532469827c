"""``Herald`` and ``AsyncHerald`` against a real Herald."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from herald import AsyncHerald, Herald, HeraldError, Retry

NO_RETRY = Retry(max_attempts=1, max_wait=0)


def test_publish_batch_history_channel_and_tokens(herald):
    with Herald(herald.base, "acme", herald.tenant("acme")) as h:
        first = h.publish("orders", {"id": 1}, event="order.created")
        assert first.channel == "orders"
        batch = h.publish_batch(
            [
                {"channel": "orders", "event": "order.created", "data": {"id": 2}},
                {"channel": "orders", "data": "text"},
                {"channel": "other", "data": None},
            ]
        )
        assert [p.channel for p in batch] == ["orders", "orders", "other"]
        page = h.history("orders", limit=2)
        assert [(e.id, e.event, e.data) for e in page.events] == [
            (first.id, "order.created", {"id": 1}),
            (batch[0].id, "order.created", {"id": 2}),
        ]
        rest = h.history("orders", after=page.next_after)
        assert [(e.id, e.event, e.data) for e in rest.events] == [(batch[1].id, "message", "text")]
        assert h.history("orders", after=rest.next_after).next_after is None
        info = h.channel("orders")
        assert (info.retained, info.last_event_id) == (3, batch[1].id)
        token = h.mint_token(["orders"], ttl_seconds=60, sub="u1")
        assert token.token.count(".") == 2 and token.expires_at


def test_errors_carry_status_and_code(herald):
    key = herald.tenant("acme")
    with Herald(herald.base, "acme", key) as h:
        with pytest.raises(HeraldError) as e:
            h.publish("bad name", 1)
        assert (e.value.status, e.value.code) == (400, "invalid_name")
        h.publish("orders", 1, idempotency_key="k1")
        with pytest.raises(HeraldError) as e:
            h.publish("orders", 2, idempotency_key="k1")
        assert (e.value.status, e.value.code) == (422, "idempotency_key_reused")
        with pytest.raises(HeraldError) as e:
            h.publish_batch([])
        assert (e.value.status, e.value.code) == (400, "invalid_body")
    with Herald(herald.base, "acme", "hk_" + "0" * 40) as wrong:
        with pytest.raises(HeraldError) as e:
            wrong.publish("orders", 1)
        assert (e.value.status, e.value.code) == (401, "unauthorized")


def test_retry_through_a_broker_outage_is_exactly_once(herald_on_redis, redis):
    key = herald_on_redis.tenant("acme")
    with Herald(herald_on_redis.base, "acme", key, retry=Retry(max_attempts=30, max_wait=30)) as h:
        h.publish("c", "before")
        redis.stop()
        with Herald(herald_on_redis.base, "acme", key, retry=NO_RETRY) as once:
            with pytest.raises(HeraldError) as e:
                once.publish("c", "x")
            assert (e.value.status, e.value.code) == (503, "unavailable")
        # Redis comes back after 1.5 s, while the publish below keeps retrying.
        back = threading.Timer(1.5, redis.start)
        back.start()
        started = time.monotonic()
        published = h.publish("c", "during", idempotency_key="outage-1")
        back.join()
        assert time.monotonic() - started >= 1.4
        assert h.publish("c", "during", idempotency_key="outage-1") == published
        during = [e for e in h.history("c").events if e.data == "during"]
        assert [e.id for e in during] == [published.id]


def test_rate_limit_honours_retry_after(herald_rate_limited):
    key = herald_rate_limited.tenant("acme")
    with Herald(herald_rate_limited.base, "acme", key) as h:
        h.publish("c", 1)
        with Herald(herald_rate_limited.base, "acme", key, retry=NO_RETRY) as once:
            with pytest.raises(HeraldError) as e:
                once.publish("c", 2)
        assert (e.value.status, e.value.code, e.value.retry_after) == (429, "rate_limited", 1.0)
        started = time.monotonic()
        h.publish("c", 3)
        assert time.monotonic() - started >= 0.9
        with Herald(herald_rate_limited.base, "acme", key, retry=Retry(max_attempts=5, max_wait=0.1)) as short:
            with pytest.raises(HeraldError) as e:
                short.publish("c", 4)
        assert e.value.code == "rate_limited"
        assert [ev.data for ev in h.history("c").events] == [1, 3]


@pytest.mark.anyio
async def test_async_client_publishes_retries_and_raises(herald_on_redis, redis):
    key = herald_on_redis.tenant("acme")
    async with AsyncHerald(herald_on_redis.base, "acme", key, retry=Retry(max_attempts=30, max_wait=30)) as h:
        first = await h.publish("c", {"n": 1}, event="x")
        [second] = await h.publish_batch([{"channel": "c", "data": 2}])
        page = await h.history("c")
        assert [e.id for e in page.events] == [first.id, second.id]
        assert (await h.channel("c")).retained == 2
        assert (await h.mint_token(["c"], ttl_seconds=5)).token
        with pytest.raises(HeraldError) as e:
            await h.publish("bad name", 1)
        assert e.value.code == "invalid_name"

        redis.stop()
        async with anyio.create_task_group() as tg:

            async def come_back() -> None:
                await anyio.sleep(1.0)
                await anyio.to_thread.run_sync(redis.start)

            tg.start_soon(come_back)
            published = await h.publish("c", "during", idempotency_key="outage-async")
        assert await h.publish("c", "during", idempotency_key="outage-async") == published
        during = [ev for ev in (await h.history("c")).events if ev.data == "during"]
        assert [ev.id for ev in during] == [published.id]
