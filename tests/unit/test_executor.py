"""AsyncCallbackExecutor: ordering, overflow policies, shutdown, errors, fork (no Redis).

Events are built by hand and delivered through a real Delivery to real worker
threads; callbacks that must be slow wait on a gate the test opens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import redis_lifecycle as rl
from redis_lifecycle._delivery import Delivery
from redis_lifecycle.events import EventOrigin
from tests.helpers import wait_until

MAIN = threading.current_thread


def acquired(
    connection_id: int | None, seq: int, pool: str = "p"
) -> rl.PoolConnectionAcquiredEvent:
    origin = EventOrigin(host="h", port=1, db=0, connection_id=connection_id, pool_name=pool)
    return rl.PoolConnectionAcquiredEvent(1.0, origin, float(seq), 1, 0)


def seq_of(event: rl.LifecycleEvent) -> int:
    assert isinstance(event, rl.PoolConnectionAcquiredEvent)
    return int(event.wait_time)


class Gate:
    """A callback that records (seq, thread) and blocks on seq 0 until opened."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.seen: list[tuple[int, str]] = []

    def __call__(self, event: rl.LifecycleEvent) -> None:
        if seq_of(event) == 0:
            assert self.opened.wait(30), "test never opened the gate"
        with self.lock:
            self.seen.append((seq_of(event), threading.current_thread().name))

    def seqs(self) -> list[int]:
        with self.lock:
            return [seq for seq, _ in self.seen]


def delivery_for(
    executor: rl.AsyncCallbackExecutor,
    callback: Callable[[rl.LifecycleEvent], object],
    strategy: str = "log",
) -> Delivery:
    dispatcher = rl.EventDispatcher()
    dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, callback)
    return Delivery(
        dispatcher,
        executor=executor,
        error_handler=rl.CallbackErrorHandler(strategy),  # type: ignore[arg-type]
    )


@pytest.fixture
def executors() -> Iterator[list[rl.AsyncCallbackExecutor]]:
    """Executors a test makes; shut down (errors ignored) afterwards."""
    made: list[rl.AsyncCallbackExecutor] = []
    yield made
    for executor in made:
        with contextlib.suppress(rl.CallbackError):
            executor.shutdown(timeout=5)


def full_queue(
    executors: list[rl.AsyncCallbackExecutor], **kwargs: object
) -> tuple[rl.AsyncCallbackExecutor, Delivery, Gate]:
    """One worker stuck on event 0 and event 1 filling the one-slot queue."""
    executor = rl.AsyncCallbackExecutor(pool_size=1, queue_size=1, **kwargs)  # type: ignore[arg-type]
    executors.append(executor)
    gate = Gate()
    delivery = delivery_for(executor, gate)
    delivery.emit(acquired(1, 0))
    wait_until(lambda: executor.stats()["running"] == 1, what="worker busy with event 0")
    delivery.emit(acquired(1, 1))
    assert executor.stats()["queued"] == 1
    return executor, delivery, gate


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"pool_size": 0}, "pool_size must be an int >= 1, got 0"),
            ({"pool_size": "4"}, "pool_size must be an int >= 1"),
            ({"pool_size": True}, "pool_size must be an int >= 1"),
            ({"queue_size": -1}, "queue_size must be an int >= 1, got -1"),
            ({"overflow": "discard"}, "'caller_runs', 'block', 'drop'"),
            ({"overflow": "block", "block_timeout": -1}, "block_timeout must be None or"),
            ({"overflow": "drop", "block_timeout": 1.0}, "applies to overflow='block' only"),
            ({"order_timeout": -1}, "order_timeout must be a number of seconds >= 0"),
        ],
    )
    def test_invalid_arguments_raise_value_error(
        self, kwargs: dict[str, object], message: str
    ) -> None:
        """Bad sizes, policies and timeouts raise ValueError saying what is valid."""
        with pytest.raises(ValueError, match=message):
            rl.AsyncCallbackExecutor(**kwargs)  # type: ignore[arg-type]

    def test_invalid_shutdown_timeout(self, executors: list[rl.AsyncCallbackExecutor]) -> None:
        """shutdown() rejects a negative timeout and stays usable."""
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executors.append(executor)
        with pytest.raises(ValueError, match="timeout must be None or"):
            executor.shutdown(timeout=-1)
        assert executor.accepting


class TestOrder:
    def test_events_of_one_connection_run_in_order(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Eight threads emitting for eight connections: each connection's events arrive in
        emission order and none is lost, across four workers."""
        executor = rl.AsyncCallbackExecutor(pool_size=4, queue_size=10_000, overflow="block")
        executors.append(executor)
        seen: dict[Any, list[int]] = {}  # keyed by connection_id
        lock = threading.Lock()

        def record(event: rl.LifecycleEvent) -> None:
            with lock:
                seen.setdefault(event.connection_id, []).append(seq_of(event))

        delivery = delivery_for(executor, record)
        per_connection = 2_000

        def emit_for(connection_id: int) -> None:
            for seq in range(per_connection):
                delivery.emit(acquired(connection_id, seq))

        threads = [threading.Thread(target=emit_for, args=(cid,)) for cid in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert executor.shutdown(timeout=30)
        assert sorted(seen) == list(range(8))
        for cid, seqs in seen.items():
            assert seqs == list(range(per_connection)), f"connection {cid} out of order"

    def test_pool_wide_events_are_ordered_by_pool(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Events without a connection (pool-wide) keep their order per pool name."""
        executor = rl.AsyncCallbackExecutor(pool_size=3, queue_size=10_000, overflow="block")
        executors.append(executor)
        seen: dict[str | None, list[int]] = {}
        delivery = delivery_for(
            executor, lambda e: seen.setdefault(e.pool_name, []).append(seq_of(e))
        )
        for seq in range(500):
            for pool in ("a", "b", "c", "d"):
                delivery.emit(acquired(None, seq, pool=pool))
        assert executor.shutdown(timeout=30)
        assert seen == {pool: list(range(500)) for pool in "abcd"}

    def test_callbacks_run_on_worker_threads(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """With room in the queue, callbacks run on the executor's named workers."""
        executor = rl.AsyncCallbackExecutor(pool_size=2)
        executors.append(executor)
        gate = Gate()
        gate.opened.set()
        delivery = delivery_for(executor, gate)
        for seq in range(10):
            delivery.emit(acquired(seq, seq))
        assert executor.shutdown()
        assert {name for _, name in gate.seen} <= {
            "redis_lifecycle-callbacks-0",
            "redis_lifecycle-callbacks-1",
        }


class TestOverflow:
    def test_caller_runs_runs_the_overflow_on_the_emitting_thread(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """caller_runs: with the queue full, the next event's callbacks run on the
        emitting thread, after the worker ran that connection's earlier events
        (order kept); none lost."""
        executor, delivery, gate = full_queue(executors)
        worker = executor._workers[0]

        # Open the gate once the emitter waits for the worker to catch up.
        def open_gate() -> None:
            wait_until(lambda: len(worker.queue) == 2, what="the catch-up marker")
            gate.opened.set()

        opener = threading.Thread(target=open_gate)
        opener.start()
        delivery.emit(acquired(1, 2))
        opener.join()
        assert gate.seqs() == [0, 1, 2]
        assert gate.seen[2] == (2, MAIN().name)
        assert executor.shutdown()
        stats = executor.stats()
        assert stats["submitted"] == 3
        assert stats["completed"] == 3
        assert stats["ran_inline"] == 1
        assert stats["dropped"] == 0

    def test_caller_runs_gives_up_on_order_after_order_timeout(
        self, executors: list[rl.AsyncCallbackExecutor], caplog: pytest.LogCaptureFixture
    ) -> None:
        """A worker that does not catch up within order_timeout (stuck callback):
        the overflowing event runs anyway, ahead, with a warning; none lost."""
        executor, delivery, gate = full_queue(executors, order_timeout=0.05)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            delivery.emit(acquired(1, 2))
        assert gate.seen == [(2, MAIN().name)]
        assert "did not catch up within 0.1s" in caplog.text
        gate.opened.set()
        assert executor.shutdown()
        assert sorted(gate.seqs()) == [0, 1, 2]

    def test_drop_counts_and_drops(self, executors: list[rl.AsyncCallbackExecutor]) -> None:
        """drop: with the queue full the event is dropped at once and counted."""
        executor, delivery, gate = full_queue(executors, overflow="drop")
        delivery.emit(acquired(1, 2))
        assert executor.stats()["dropped"] == 1
        gate.opened.set()
        assert executor.shutdown()
        assert gate.seqs() == [0, 1]
        stats = executor.stats()
        assert stats["completed"] + stats["dropped"] == stats["submitted"] == 3

    def test_block_with_timeout_drops_after_waiting(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """block with block_timeout: no room in time means dropped and counted, not run."""
        executor, delivery, gate = full_queue(executors, overflow="block", block_timeout=0.05)
        delivery.emit(acquired(1, 2))
        assert executor.stats()["dropped"] == 1
        gate.opened.set()
        assert executor.shutdown()
        assert gate.seqs() == [0, 1]

    def test_block_waits_for_room_and_keeps_order(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """block without timeout: the emitter waits until a worker frees a slot, then queues."""
        executor, delivery, gate = full_queue(executors, overflow="block")
        emitter = threading.Thread(target=delivery.emit, args=(acquired(1, 2),))
        emitter.start()
        wait_until(lambda: executor._blocked == 1, what="emitter blocked on a full queue")
        assert emitter.is_alive()
        gate.opened.set()
        emitter.join(10)
        assert not emitter.is_alive()
        assert executor.shutdown()
        assert gate.seqs() == [0, 1, 2]
        assert executor.stats()["dropped"] == 0

    def test_shutdown_wakes_a_blocked_emitter_which_runs_inline(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """An emitter blocked when shutdown starts runs its event inline instead of waiting."""
        executor, delivery, gate = full_queue(executors, overflow="block")
        emitter = threading.Thread(target=delivery.emit, args=(acquired(1, 2),), name="emitter")
        emitter.start()
        wait_until(lambda: executor._blocked == 1, what="emitter blocked")
        assert executor.shutdown(timeout=0) is False  # event 0 still stuck
        emitter.join(10)
        assert not emitter.is_alive()
        assert (2, "emitter") in gate.seen
        gate.opened.set()
        assert executor.shutdown(timeout=10)
        assert sorted(gate.seqs()) == [0, 1, 2]

    def test_a_worker_emitting_into_a_full_queue_does_not_deadlock(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Under block, a callback that emits while the queue is full runs that event inline."""
        executor = rl.AsyncCallbackExecutor(pool_size=1, queue_size=1, overflow="block")
        executors.append(executor)
        nested: list[int] = []
        dispatcher = rl.EventDispatcher()
        delivery = Delivery(dispatcher, executor=executor)

        def on_event(event: rl.LifecycleEvent) -> None:
            if seq_of(event) == 0:
                for seq in range(1, 4):  # one fits the queue, the rest overflow
                    delivery.emit(acquired(1, seq))
            else:
                nested.append(seq_of(event))

        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, on_event)
        delivery.emit(acquired(1, 0))
        assert executor.shutdown(timeout=10)
        assert sorted(nested) == [1, 2, 3]
        assert executor.stats()["dropped"] == 0


class TestShutdown:
    def test_shutdown_drains_queued_work(self, executors: list[rl.AsyncCallbackExecutor]) -> None:
        """Everything queued before shutdown runs before it returns True."""
        executor = rl.AsyncCallbackExecutor(pool_size=1, queue_size=100)
        executors.append(executor)
        gate = Gate()
        delivery = delivery_for(executor, gate)
        for seq in range(50):
            delivery.emit(acquired(1, seq))
        assert executor.stats()["queued"] >= 48
        gate.opened.set()
        assert executor.shutdown(timeout=30) is True
        assert gate.seqs() == list(range(50))
        stats = executor.stats()
        assert (stats["submitted"], stats["completed"], stats["queued"]) == (50, 50, 0)

    def test_shutdown_times_out_with_work_left_then_finishes_it(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """A stuck callback makes shutdown return False; the queue still drains afterwards."""
        executor = rl.AsyncCallbackExecutor(pool_size=1, queue_size=100)
        executors.append(executor)
        gate = Gate()
        delivery = delivery_for(executor, gate)
        for seq in range(20):
            delivery.emit(acquired(1, seq))
        assert executor.shutdown(timeout=0.01) is False
        assert not executor.accepting
        gate.opened.set()
        wait_until(lambda: len(gate.seqs()) == 20, what="queued events drained after shutdown")
        assert gate.seqs() == list(range(20))
        assert executor.shutdown(timeout=10) is True

    def test_events_after_shutdown_run_inline_and_are_counted(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """After shutdown an event is not lost: it runs on the emitting thread and is counted."""
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executors.append(executor)
        gate = Gate()
        gate.opened.set()
        delivery = delivery_for(executor, gate)
        assert executor.shutdown()
        delivery.emit(acquired(1, 5))
        assert gate.seen == [(5, MAIN().name)]
        stats = executor.stats()
        assert (stats["submitted"], stats["completed"], stats["ran_inline"]) == (1, 1, 1)

    def test_context_manager_shuts_down(self) -> None:
        """Leaving the with block drains the queue and stops the workers."""
        gate = Gate()
        gate.opened.set()
        with rl.AsyncCallbackExecutor(pool_size=2) as executor:
            delivery = delivery_for(executor, gate)
            for seq in range(1, 30):
                delivery.emit(acquired(seq % 3, seq))
        assert not executor.accepting
        assert sorted(gate.seqs()) == list(range(1, 30))
        assert all(not w.thread.is_alive() for w in executor._workers if w.thread is not None)


class TestErrors:
    def test_raise_strategy_collects_and_shutdown_raises(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Under raise, worker failures are kept and shutdown() raises them with their cause."""
        executor = rl.AsyncCallbackExecutor(pool_size=2)
        executors.append(executor)

        def fail(event: rl.LifecycleEvent) -> None:
            raise KeyError(seq_of(event))

        delivery = delivery_for(executor, fail, strategy="raise")
        delivery.emit(acquired(1, 1))  # does not raise here: the command has moved on
        with pytest.raises(rl.CallbackError) as caught:
            executor.shutdown()
        assert isinstance(caught.value.__cause__, KeyError)
        assert caught.value.event is not None
        assert executor.stats()["failed"] == 1

    def test_several_failures_are_all_reported(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Several failures raise one CallbackError whose errors lists each of them."""
        executor = rl.AsyncCallbackExecutor(pool_size=2)
        executors.append(executor)

        def fail(event: rl.LifecycleEvent) -> None:
            raise ValueError(seq_of(event))

        delivery = delivery_for(executor, fail, strategy="raise")
        for seq in range(5):
            delivery.emit(acquired(seq, seq))
        with pytest.raises(rl.CallbackError, match="5 callbacks raised") as caught:
            executor.shutdown()
        assert sorted(seq_of(e.event) for e in caught.value.errors if e.event) == list(range(5))

    def test_log_strategy_logs_from_the_worker_and_counts(
        self, executors: list[rl.AsyncCallbackExecutor], caplog: pytest.LogCaptureFixture
    ) -> None:
        """Under log, a worker's failure is logged, counted as failed, and shutdown succeeds."""
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executors.append(executor)

        def fail(event: rl.LifecycleEvent) -> None:
            raise RuntimeError("worker boom")

        delivery = delivery_for(executor, fail)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            delivery.emit(acquired(1, 1))
            assert executor.shutdown() is True
        assert "worker boom" in caplog.text
        assert executor.stats()["failed"] == 1

    def test_after_shutdown_raise_reaches_the_emitter(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Once shut down, delivery is inline, so strategy raise raises at the emit."""
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executors.append(executor)
        executor.shutdown()

        def fail(event: rl.LifecycleEvent) -> None:
            raise RuntimeError("late")

        delivery = delivery_for(executor, fail, strategy="raise")
        with pytest.raises(rl.CallbackError):
            delivery.emit(acquired(1, 1))


class TestCounts:
    def test_exact_counts_with_sixteen_threads(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """16 emitting threads and a small queue under caller_runs: nothing dropped, and
        completed equals submitted equals callbacks run."""
        executor = rl.AsyncCallbackExecutor(pool_size=4, queue_size=8)
        executors.append(executor)
        ran: list[rl.LifecycleEvent] = []
        delivery = delivery_for(executor, ran.append)  # list.append is atomic
        per_thread = 1_000

        def emit_many(cid: int) -> None:
            for seq in range(per_thread):
                delivery.emit(acquired(cid, seq))

        threads = [threading.Thread(target=emit_many, args=(cid,)) for cid in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert executor.shutdown(timeout=30)
        stats = executor.stats()
        assert stats["submitted"] == 16 * per_thread
        assert stats["dropped"] == 0
        assert stats["completed"] + stats["dropped"] == stats["submitted"]
        assert len(ran) == stats["completed"]
        assert stats["queued"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_workers_restart_in_a_forked_child(executors: list[rl.AsyncCallbackExecutor]) -> None:
    """In a forked child the executor's fresh workers deliver the child's events."""
    executor = rl.AsyncCallbackExecutor(pool_size=2)
    executors.append(executor)
    seen: list[tuple[int, str]] = []
    delivery = delivery_for(executor, lambda e: seen.append((seq_of(e), MAIN().name)))
    delivery.emit(acquired(1, 1))
    wait_until(lambda: len(seen) == 1, what="parent event delivered")
    pid = os.fork()
    if pid == 0:  # child: report through the exit code only
        code = 1
        try:
            seen.clear()
            for seq in range(10, 20):
                delivery.emit(acquired(1, seq))
            drained = executor.shutdown(timeout=10)
            on_workers = all(name.startswith("redis_lifecycle-callbacks") for _, name in seen)
            stats = executor.stats()
            if (
                drained
                and [s for s, _ in seen] == list(range(10, 20))
                and on_workers
                and stats["submitted"] == stats["completed"] == 10
            ):
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    delivery.emit(acquired(1, 2))  # the parent's executor is unaffected
    wait_until(lambda: len(seen) == 2, what="parent still delivers after the fork")


class Ledger:
    """Records every delivered (connection, seq), thread-safely; optionally slow."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.lock = threading.Lock()
        self.seen: dict[Any, list[int]] = {}  # keyed by connection_id

    def __call__(self, event: rl.LifecycleEvent) -> None:
        if self.pause:
            time.sleep(self.pause)  # a slow callback (a network call, say)
        with self.lock:
            self.seen.setdefault(event.connection_id, []).append(seq_of(event))

    def total(self) -> int:
        with self.lock:
            return sum(len(seqs) for seqs in self.seen.values())


EMITTERS = 8
CONNECTIONS_PER_EMITTER = 3


def emit_from_eight_threads(delivery: Delivery, per_connection: int) -> None:
    """8 threads, each interleaving the events of its own 3 connections
    (connection ids 0..23), seq 0..per_connection-1 per connection."""
    start = threading.Barrier(EMITTERS)
    errors: list[BaseException] = []

    def emit(thread_index: int) -> None:
        try:
            start.wait(30)
            cids = [thread_index * CONNECTIONS_PER_EMITTER + k for k in range(3)]
            for seq in range(per_connection):
                for cid in cids:
                    delivery.emit(acquired(cid, seq))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=emit, args=(i,)) for i in range(EMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors


ALL_CONNECTIONS = list(range(EMITTERS * CONNECTIONS_PER_EMITTER))


class TestBatchedHandOff:
    """The hand-off is a deque per worker drained in batches, the worker woken
    only when idle: nothing may be lost, doubled or reordered by it."""

    def test_eight_threads_every_event_exactly_once_in_order(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """8 emitting threads, 24 connections, room for everything: each event runs
        exactly once, on a worker, each connection's in emission order; the counts agree."""
        executor = rl.AsyncCallbackExecutor(pool_size=4, queue_size=100_000)
        executors.append(executor)
        ledger = Ledger()
        delivery = delivery_for(executor, ledger)
        per_connection = 1_000
        emit_from_eight_threads(delivery, per_connection)
        assert executor.shutdown(timeout=60)
        assert sorted(ledger.seen) == ALL_CONNECTIONS
        for cid, seqs in ledger.seen.items():
            assert seqs == list(range(per_connection)), f"connection {cid}"
        stats = executor.stats()
        total = len(ALL_CONNECTIONS) * per_connection
        assert stats["submitted"] == stats["completed"] == total
        assert (stats["dropped"], stats["ran_inline"], stats["queued"]) == (0, 0, 0)

    def test_an_idle_worker_is_woken_by_the_next_event(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Many times over: once the worker has gone idle (asleep until woken), one
        event wakes it and runs; a lost wake-up would leave it queued."""
        from redis_lifecycle.executor import _IDLE

        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executors.append(executor)
        ledger = Ledger()
        delivery = delivery_for(executor, ledger)
        worker = executor._workers[0]
        for seq in range(50):
            wait_until(lambda: worker.state == _IDLE, what="the worker idle")
            delivery.emit(acquired(1, seq))
            wait_until(lambda: ledger.total() == seq + 1, what=f"event {seq} delivered")  # noqa: B023
        assert ledger.seen == {1: list(range(50))}
        assert executor.stats()["submitted"] == 50

    def test_events_queued_behind_a_busy_worker_run_as_one_batch_in_order(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """While the worker is held by a callback, later events only queue (no wake-up);
        once released it runs all of them, in order, and the slots come back."""
        executor = rl.AsyncCallbackExecutor(pool_size=1, queue_size=500)
        executors.append(executor)
        gate = Gate()
        delivery = delivery_for(executor, gate)
        delivery.emit(acquired(1, 0))
        wait_until(lambda: executor.stats()["running"] == 1, what="worker busy with event 0")
        for seq in range(1, 401):
            delivery.emit(acquired(1, seq))
        stats = executor.stats()
        assert (stats["queued"], stats["submitted"], stats["completed"]) == (400, 401, 0)
        gate.opened.set()
        wait_until(lambda: executor.stats()["completed"] == 401, what="the batch run")
        assert gate.seqs() == list(range(401))
        assert {name for _, name in gate.seen} == {"redis_lifecycle-callbacks-0"}
        assert executor.stats()["queued"] == 0


class TestOverflowUnderLoad:
    """Each overflow policy with 8 emitting threads, a small queue and a slow
    callback, so that the queue is full most of the time."""

    PER_CONNECTION = 40

    def test_caller_runs_loses_nothing_and_keeps_order(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """caller_runs: the overflow runs on the emitting threads, after the worker
        caught up, so every event runs once and each connection keeps its order."""
        executor = rl.AsyncCallbackExecutor(pool_size=2, queue_size=4, order_timeout=30)
        executors.append(executor)
        ledger = Ledger(pause=0.001)
        delivery = delivery_for(executor, ledger)
        emit_from_eight_threads(delivery, self.PER_CONNECTION)
        assert executor.shutdown(timeout=60)
        for cid in ALL_CONNECTIONS:
            assert ledger.seen[cid] == list(range(self.PER_CONNECTION)), f"connection {cid}"
        stats = executor.stats()
        total = len(ALL_CONNECTIONS) * self.PER_CONNECTION
        assert stats["submitted"] == stats["completed"] == total
        assert stats["dropped"] == 0
        assert 0 < stats["ran_inline"] < total  # the queue overflowed, the workers ran some

    def test_block_waits_loses_nothing_and_keeps_order(
        self, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """block without a timeout: emitters wait for room; every event runs once on a
        worker, in order per connection."""
        executor = rl.AsyncCallbackExecutor(pool_size=2, queue_size=4, overflow="block")
        executors.append(executor)
        ledger = Ledger(pause=0.001)
        delivery = delivery_for(executor, ledger)
        emit_from_eight_threads(delivery, self.PER_CONNECTION)
        assert executor.shutdown(timeout=60)
        for cid in ALL_CONNECTIONS:
            assert ledger.seen[cid] == list(range(self.PER_CONNECTION)), f"connection {cid}"
        stats = executor.stats()
        total = len(ALL_CONNECTIONS) * self.PER_CONNECTION
        assert stats["submitted"] == stats["completed"] == total
        assert (stats["dropped"], stats["ran_inline"]) == (0, 0)

    @pytest.mark.parametrize(
        "kwargs", [{"overflow": "drop"}, {"overflow": "block", "block_timeout": 0.0}]
    )
    def test_dropping_policies_count_every_drop_and_keep_order(
        self, kwargs: dict[str, object], executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """drop, and block that gives up at once: what is not run is counted as
        dropped (delivered + dropped == emitted), nothing runs twice or inline, and
        what runs keeps each connection's order."""
        executor = rl.AsyncCallbackExecutor(pool_size=2, queue_size=4, **kwargs)  # type: ignore[arg-type]
        executors.append(executor)
        ledger = Ledger(pause=0.001)
        delivery = delivery_for(executor, ledger)
        emit_from_eight_threads(delivery, self.PER_CONNECTION)
        assert executor.shutdown(timeout=60)
        stats = executor.stats()
        total = len(ALL_CONNECTIONS) * self.PER_CONNECTION
        assert stats["submitted"] == total
        assert stats["completed"] + stats["dropped"] == total
        assert stats["completed"] == ledger.total()
        assert stats["dropped"] > 0  # 4 slots, 960 events, a slow callback
        assert stats["ran_inline"] == 0
        for cid, seqs in ledger.seen.items():
            assert seqs == sorted(set(seqs)), f"connection {cid}: repeated or out of order"
