"""A rate limit and a connection cap shared by every pool that uses the same Redis keys.

A provider's limit is per account, not per process: pools in N processes on M machines that
each count alone send N x M times the limit. Give each of them the same limiters instead::

    client = redis.Redis()
    pool = rawsmtp.SMTPPool(
        host="smtp.example.com", rate_limit=100, max_connections=5,
        rate_limiter=RedisRateLimiter(client, "rawsmtp:acct:rate"),
        connection_limiter=RedisConnectionSemaphore(client, "rawsmtp:acct:conn", limit=3),
    )

The pool's scheduler runs on its event loop and must never wait for Redis, so each limiter holds
local leases that a thread of its own refills; the scheduler only spends what is leased.

:class:`RedisRateLimiter` is a sliding-window log in one Lua script, on Redis's clock. A lease
of k starts adds k entries at the lease time T, each scored ``T + lease`` (the latest moment a
start it allows can happen), and is spent locally only until ``lease`` after the request was
sent, so every MAIL it allows lies in ``[T, T + lease]``. A lease is granted only while the
entries scored after ``T - delta`` plus k stay within the limit. Exactness: take any window
``[t, t + delta)`` and the last lease granted (at T) among the starts in it; every earlier start
in it happened after ``t > T - delta``, and its score is at or after its start, so it was counted
when that lease was granted: no window holds more than the limit, across all clients, however
their clocks differ. Unused entries of an ended lease are given back. The price is that a
saturated limit runs at ``limit / (delta + lease)``, hence the short default lease.

:class:`RedisConnectionSemaphore` is a sorted set of holder ids scored by expiry and a FIFO of
waiting clients: a holder is
added only while fewer than ``limit`` unexpired ones exist, the thread refreshes the holders of
open connections every ``ttl / 3`` and removes those of closed ones, and a crashed process's
holders expire after ``ttl``.

Redis down (or slow): both fail closed. No new lease is granted, the thread retries with
exponential back-off (0.1 s to 5 s) and logs one warning per outage (and one line when Redis
answers again). Leases already held stay valid: they were counted. An outage longer than
``ttl`` cannot push the connection cap over either, since no other client gets a holder then.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from typing import Any

import redis

__all__ = ["RedisConnectionSemaphore", "RedisRateLimiter"]

log = logging.getLogger("rawsmtp.contrib.redis")

_MIN_BACKOFF, _MAX_BACKOFF = 0.1, 5.0

# KEYS[1] the log; ARGV: limit, delta ms, lease ms, want, lease id, give-back id, from, to.
_RATE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, delta, lease, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[6] ~= '' then
  for i = tonumber(ARGV[7]), tonumber(ARGV[8]) - 1 do
    redis.call('ZREM', KEYS[1], ARGV[6] .. ':' .. i)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - delta)
if want == 0 then return {0, 0} end
local grant = math.min(want, limit - redis.call('ZCARD', KEYS[1]))
if grant > 0 then
  local entries = {}
  for i = 0, grant - 1 do
    entries[#entries + 1] = now + 1 + lease
    entries[#entries + 1] = ARGV[5] .. ':' .. i
  end
  redis.call('ZADD', KEYS[1], unpack(entries))
  redis.call('PEXPIRE', KEYS[1], delta + lease + 1000)
  return {grant, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] == nil then return {0, 0} end
return {0, tonumber(oldest[2]) + delta - now}
"""

# KEYS[1] the holders, KEYS[2] the waiters (FIFO by first request; ``<KEYS[2]>:<id>`` says a
# waiter still asks); ARGV: limit, ttl ms, want, new id prefix, client id, alive ms, #released,
# released..., held... Returns {added, lost held ids...}.
_SEMAPHORE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holders, waiters, me = KEYS[1], KEYS[2], ARGV[5]
local limit, ttl, want, released = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
for i = 8, 7 + released do redis.call('ZREM', holders, ARGV[i]) end
local result = {0}
for i = 8 + released, #ARGV do
  if redis.call('ZADD', holders, 'XX', 'CH', now + ttl, ARGV[i]) == 0 and
     not redis.call('ZSCORE', holders, ARGV[i]) then
    result[#result + 1] = ARGV[i]
  end
end
redis.call('PEXPIRE', holders, ttl + 1000)
if want == 0 then return result end
if not redis.call('ZSCORE', waiters, me) then redis.call('ZADD', waiters, now, me) end
redis.call('SET', waiters .. ':' .. me, 1, 'PX', ARGV[6])
redis.call('PEXPIRE', waiters, ttl + 1000)
while true do
  local head = redis.call('ZRANGE', waiters, 0, 0)[1]
  if head == nil or redis.call('EXISTS', waiters .. ':' .. head) == 1 then break end
  redis.call('ZREM', waiters, head)
end
local free = limit - redis.call('ZCARD', holders) - redis.call('ZRANK', waiters, me)
for i = 1, math.min(want, free) do
  redis.call('ZADD', holders, now + ttl, ARGV[4] .. ':' .. i)
  result[1] = i
end
if result[1] > 0 then
  redis.call('ZREM', waiters, me)
  redis.call('DEL', waiters .. ':' .. me)
end
return result
"""


class _Refiller:
    """The thread behind a limiter: one round trip whenever ``_due`` says so, and the
    failure policy (fail closed, back-off, one warning per outage). Started on first use and
    again in a forked child, so a limiter built before a fork works in the child."""

    def __init__(self, client: redis.Redis, key: str, name: str) -> None:
        self.client, self.key, self._name = client, key, name
        self.round_trips = 0
        self.lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.closing = False
        self._backoff = 0.0
        self.retry_at = 0.0  # no round trip before this: Redis is down
        self.full_until = 0.0  # no new lease asked for before this: the shared limit is full
        self.down = False

    def wake(self) -> None:
        """Call with the lock held: there is work for the thread."""
        if self._pid != os.getpid() or self._thread is None:
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self.lock.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread after a last round trip (which gives back what is unused)."""
        with self.lock:
            self.closing = True
            self.lock.notify()
            thread = self._thread if self._pid == os.getpid() else None
        if thread is not None:
            thread.join(timeout)

    def _due(self, now: float) -> float | None:
        """Seconds until the next round trip is needed (0: now); None: only a wake."""
        raise NotImplementedError

    def _round_trip(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.closing:
                    now = time.monotonic()
                    due = self._due(now)
                    if due is None:
                        self.lock.wait()
                        continue
                    start = max(now + due, self.retry_at)
                    if start <= now:
                        break
                    self.lock.wait(start - now)
                closing = self.closing
                if closing:
                    self._give_up()
            self._attempt()
            if closing:
                return

    def _give_up(self) -> None:
        """Closing: mark every lease for giving back in the last round trip."""
        raise NotImplementedError

    def _attempt(self) -> None:
        try:
            self._round_trip()
        except (redis.RedisError, OSError) as error:
            with self.lock:
                self._backoff = min(_MAX_BACKOFF, max(_MIN_BACKOFF, 2 * self._backoff))
                self.retry_at = time.monotonic() + self._backoff
                if not self.down:
                    self.down = True
                    log.warning("%s: Redis unavailable, granting nothing: %s", self.key, error)
            return
        with self.lock:
            self._backoff = 0.0
            if self.down:
                self.down = False
                log.warning("%s: Redis answers again", self.key)


class RedisRateLimiter(_Refiller):
    """A :class:`~rawsmtp.pool._limits.RateLimiter` shared through Redis (see the module).

    Every client of one ``key`` must use the same ``delta`` (the pool's ``rate_delta``). The
    limit is the pool's ``rate_limit`` (lower while the pool is throttled: a throttled client
    then takes starts only while the shared window is below its own lower limit). ``lease``
    is how long a leased start is good for: it is spent in its first half, which leaves the
    second for its MAIL to be written; ``max_lease`` caps the starts one round
    trip takes (default: a quarter of the limit), for fairness between clients.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        delta: float = 1.0,
        lease: float = 0.1,
        max_lease: int | None = None,
        poll: float = 0.002,
    ) -> None:
        super().__init__(client, key, "rawsmtp-redis-rate")
        self.delta, self.lease, self.max_lease, self.poll = delta, lease, max_lease, poll
        self._script = client.register_script(_RATE_SCRIPT)
        self._id = uuid.uuid4().hex
        self._serial = 0
        self._limit = 1
        self._want = 0
        # The current lease: its id, size, unspent starts, and until when it may be spent.
        self._lease_id = ""
        self._size = 0
        self._left = 0
        self._until = 0.0
        self._reserved: deque[float] = deque()  # lease end of each reservation not confirmed
        self.confirmed = 0
        self.late = 0  # MAILs reported after their lease ended (should stay 0)

    # -- the pool's side (its loop thread): no I/O ----------------------------------------------

    def acquire(self, now: float, n: int, limit: int) -> int:
        with self.lock:
            self._limit = limit
            granted = min(n, self._left) if self._spendable(now) else 0
            self._left -= granted
            self._reserved.extend([self._until] * granted)
            if granted < n and self._want < n - granted:
                self._want = n - granted
                self.wake()
            return granted

    def confirm(self, now: float) -> None:
        with self.lock:
            until = self._reserved.popleft() if self._reserved else now
            self.confirmed += 1
            if now > until:
                self.late += 1

    def release(self) -> None:
        # The start stays counted in Redis until its lease ends: it is not spent again.
        with self.lock:
            if self._reserved:
                self._reserved.popleft()

    def next_free(self, now: float, limit: int) -> float | None:
        with self.lock:
            if self._left and self._spendable(now):
                return None
            return max(self.retry_at, self.full_until, now + self.poll)

    def _spendable(self, now: float) -> bool:
        """Whether the lease may still be spent: half of it is left for the MAIL to be written.
        The clock is read again, since the loop's ``now`` dates from the start of its round."""
        return max(now, time.monotonic()) < self._until - self.lease / 2

    # -- the thread's side ----------------------------------------------------------------------

    def _due(self, now: float) -> float | None:
        if self._want:
            return self.full_until - now
        if self._left:  # give the unspent starts back once the lease has ended
            return self._until - now
        return None

    def _round_trip(self) -> None:
        with self.lock:
            cap = self.max_lease or max(1, self._limit // 4)
            want = min(self._want, cap, self._limit)
            give_back = None
            if self._left and not self._spendable(0.0):
                give_back = (self._lease_id, self._size - self._left, self._size)
                self._left = 0  # the ended lease's rest is given back
            self._serial += 1
            lease_id = f"{self._id}:{self._serial}"
            limit = self._limit
        sent = time.monotonic()
        self.round_trips += 1
        granted, wait_ms = self._script(
            keys=[self.key],
            args=[
                limit,
                round(self.delta * 1000),
                round(self.lease * 1000),
                want,
                lease_id,
                *(give_back or ("", 0, 0)),
            ],
        )
        with self.lock:
            if granted:
                self._lease_id, self._size, self._left = lease_id, int(granted), int(granted)
                self._until = sent + self.lease
                self._want = 0  # the next acquire says what is still wanted
            elif want:
                self.full_until = time.monotonic() + int(wait_ms) / 1000

    def _give_up(self) -> None:
        self._want, self._until = 0, 0.0


class RedisConnectionSemaphore(_Refiller):
    """A :class:`~rawsmtp.pool._limits.ConnectionLimiter` shared through Redis (see the module):
    at most ``limit`` connections hold a lease at once across all its clients, granted first
    come, first served. A waiting client asks again every ``poll`` seconds; a holder gives its
    lease back when its connection ends (``max_messages``, ``idle_timeout``), so a short
    ``idle_timeout`` lets other processes have the connections a quiet one does not use."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        limit: int,
        ttl: float = 30.0,
        poll: float = 0.02,
    ) -> None:
        super().__init__(client, key, "rawsmtp-redis-connections")
        self.limit, self.ttl, self.poll = limit, ttl, poll
        self._script = client.register_script(_SEMAPHORE_SCRIPT)
        self._id = uuid.uuid4().hex
        self._serial = 0
        self._spare: list[tuple[str, float]] = []  # (holder, when leased): not handed out yet
        self._held: set[str] = set()
        self._released: list[str] = []
        self._want = False
        self._synced = 0.0
        self.lost = 0  # holders that expired while their connection was open (should stay 0)

    def acquire(self, now: float) -> object | None:
        with self.lock:
            if self._spare:
                holder = self._spare.pop()[0]
                self._held.add(holder)
                return holder
            if not self._want:
                self._want = True
                self.wake()
            return None

    def release(self, token: object) -> None:
        with self.lock:
            if token in self._held:
                self._held.discard(str(token))
                self._released.append(str(token))
                self.wake()

    def next_free(self, now: float) -> float | None:
        with self.lock:
            return max(self.retry_at, self.full_until, now + self.poll)

    @property
    def held(self) -> int:
        """Holders of this client's open connections."""
        with self.lock:
            return len(self._held)

    def _due(self, now: float) -> float | None:
        times = [self._synced + self.ttl / 3] if self._held or self._spare else []
        if self._released:
            times.append(now)
        if self._want:
            times.append(self.full_until)
        if self._spare:  # a spare nobody took within a second goes back
            times.append(self._spare[0][1] + 1.0)
        return min(times) - now if times else None

    def _give_up(self) -> None:
        self._released += [*self._held, *(holder for holder, _ in self._spare)]
        self._held.clear()
        self._spare.clear()
        self._want = False

    def _round_trip(self) -> None:
        now = time.monotonic()
        with self.lock:
            self._released += [h for h, leased in self._spare if now - leased >= 1.0]
            self._spare = [(h, leased) for h, leased in self._spare if now - leased < 1.0]
            released, held = list(self._released), [*self._held, *(h for h, _ in self._spare)]
            want = int(self._want)
            self._serial += 1
            prefix = f"{self._id}:{self._serial}"
        self.round_trips += 1
        result: list[Any] = self._script(
            keys=[self.key, self.key + ":waiting"],
            args=[
                self.limit,
                round(self.ttl * 1000),
                want,
                prefix,
                self._id,
                round(self.poll * 3000) + 1000,
                len(released),
                *released,
                *held,
            ],
        )
        added, lost = int(result[0]), {_text(holder) for holder in result[1:]}
        with self.lock:
            self._synced = now
            del self._released[: len(released)]
            if lost:
                self.lost += len(lost & self._held)
                log.warning("%s: %d connection leases expired while held", self.key, len(lost))
                self._held -= lost
                self._spare = [(h, at) for h, at in self._spare if h not in lost]
            self._spare += [(f"{prefix}:{i}", now) for i in range(1, added + 1)]
            if added:
                self._want = False
            elif want:  # still waiting in line: ask again (and say so) in a moment
                self.full_until = time.monotonic() + self.poll


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
