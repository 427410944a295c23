"""The per-command pool methods are patched only while someone listens to a
per-command event, so an instrumented client with no such subscriber runs
redis-py's own ``get_connection`` and ``release`` (behaviour, not timing)."""

from __future__ import annotations

import redis
import redis.connection as rconn

import redis_lifecycle as rl
from redis_lifecycle._hooks.sync import SYNC_CHECKOUT_PATCHER, SYNC_RELEASE_PATCHER

from ..helpers import Recorder

ORIGINAL_GET = rconn.ConnectionPool.__dict__["get_connection"]
ORIGINAL_RELEASE = rconn.ConnectionPool.__dict__["release"]


def pool_methods_are_redis_pys() -> bool:
    return (
        rconn.ConnectionPool.__dict__["get_connection"] is ORIGINAL_GET
        and rconn.ConnectionPool.__dict__["release"] is ORIGINAL_RELEASE
    )


class TestPerCommandPatches:
    def test_no_subscriber_leaves_checkout_and_release_untouched(self, redis_url: str) -> None:
        """instrument() with no subscriber patches neither get_connection nor release."""
        client = redis.Redis.from_url(redis_url)
        rl.instrument(client)
        client.ping()
        assert pool_methods_are_redis_pys()
        rl.uninstrument(client)
        client.close()

    def test_rare_subscribers_leave_them_untouched(self, redis_url: str) -> None:
        """Subscribers to connect/disconnect/error/health/reset events only do
        not patch the per-command methods."""
        client = redis.Redis.from_url(redis_url)
        handle = rl.instrument(client)
        for cls in (
            rl.ConnectionConnectedEvent,
            rl.ConnectionDisconnectedEvent,
            rl.ConnectionErrorEvent,
            rl.ConnectionHealthCheckEvent,
            rl.PoolResetEvent,
        ):
            handle.dispatcher.subscribe(cls, lambda event: None)
        client.ping()
        assert pool_methods_are_redis_pys()
        rl.uninstrument(client)
        client.close()

    def test_exhaustion_subscriber_on_a_plain_pool_patches_nothing_per_command(
        self, redis_url: str
    ) -> None:
        """A ConnectionPool runs out in make_connection, which is hooked
        anyway: pool_exhausted alone leaves checkout and release untouched."""
        client = redis.Redis.from_url(redis_url)
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.PoolExhaustedEvent, lambda event: None)
        client.ping()
        assert pool_methods_are_redis_pys()
        rl.uninstrument(client)
        client.close()

    def test_exhaustion_subscriber_on_a_blocking_pool_patches_checkout_only(
        self, redis_url: str
    ) -> None:
        """A BlockingConnectionPool runs out in its checkout (a timed wait): the
        checkout is guarded, the release is not patched."""
        pool = rconn.BlockingConnectionPool.from_url(redis_url)
        handle = rl.instrument(pool)
        handle.dispatcher.subscribe(rl.PoolExhaustedEvent, lambda event: None)
        assert SYNC_CHECKOUT_PATCHER.installed
        assert not SYNC_RELEASE_PATCHER.installed
        assert rconn.ConnectionPool.__dict__["release"] is ORIGINAL_RELEASE
        rl.uninstrument(pool)
        assert not SYNC_CHECKOUT_PATCHER.installed
        pool.disconnect()

    def test_subscribing_later_patches_and_unsubscribing_unpatches(
        self, redis_url: str, recorder: Recorder
    ) -> None:
        """A per-command subscription made after instrument() starts the
        acquired/released events at once; dropping it restores redis-py's
        methods, and events stop."""
        client = redis.Redis.from_url(redis_url)
        handle = rl.instrument(client)
        client.ping()
        assert pool_methods_are_redis_pys()

        acquired = handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
        released = handle.dispatcher.subscribe(rl.PoolConnectionReleasedEvent, recorder)
        client.ping()
        assert recorder.types() == ["connection_acquired", "connection_released"]
        assert not pool_methods_are_redis_pys()

        acquired.unsubscribe()
        released.unsubscribe()
        assert pool_methods_are_redis_pys()
        recorder.clear()
        client.ping()
        assert recorder.types() == []
        rl.uninstrument(client)
        client.close()

    def test_patches_stay_while_another_pool_still_wants_them(self, redis_url: str) -> None:
        """Two clients listening to per-command events share the patches; they
        come off only when the last one stops listening."""
        first = redis.Redis.from_url(redis_url)
        second = redis.Redis.from_url(redis_url)
        seen: list[rl.LifecycleEvent] = []
        for client in (first, second):
            rl.instrument(client).dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, seen.append)
        rl.uninstrument(first)
        assert not pool_methods_are_redis_pys()
        second.ping()
        assert [type(e) for e in seen] == [rl.PoolConnectionAcquiredEvent]
        first.ping()  # uninstrumented: nothing more
        assert len(seen) == 1
        rl.uninstrument(second)
        assert pool_methods_are_redis_pys()
        first.close()
        second.close()
