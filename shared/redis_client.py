"""How every process connects to Redis: the one place that opens its clients (sync and asyncio)
and sets the Celery broker's connection options, so all of them ride out a Redis restart alike.

A Redis restart (under `assetrag up`, back from its append-only file within seconds) closes
every pooled connection. A client retries a command that fails on a closed or refused
connection (or on Redis still loading its file: redis-py's BusyLoadingError is a
ConnectionError) on a fresh one, with backoff, for a few seconds; so the first request after
a restart is answered, not refused with 503. Before reusing a connection idle for the health
check interval it pings it, so one that died quietly is replaced before a command is lost on
it. redis-py 8's default retries give up after about a second and a half, less than a
supervised restart takes (measured: a submit sent while Redis restarted got 503); redis-py 5
(pyproject allows redis>=5) retries not at all; so the policy is stated here, not inherited.

A retried command may run twice when Redis ran it but its reply was lost (rare: a restart
refuses or closes connections before a command runs). The job store's Lua scripts are
guarded (a batch is counted once, a terminal state written once), a task pushed twice is a
redelivery, which every task tolerates, and an item's claim counter may count one attempt
more than was made: it errs towards saying an item was tried again, never towards paying
again.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

# Backoff from ~0.1 s up to 1 s (jittered, so many clients do not reconnect in step) over 8
# retries: 3 to 6 seconds in all, which covers a supervised restart (1 s backoff, start-up,
# reading the append-only file). Longer would hold every request through a real outage.
RETRIES = 8
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
# ConnectionRefusedError (an OSError, not redis-py's ConnectionError): redis-py 5 retries a
# connect only on its own errors, so a Redis not yet listening again would fail at once.
RETRY_ON = (ConnectionError, TimeoutError, ConnectionRefusedError)
HEALTH_CHECK_S = 10
# Without it a connect to a host that is gone waits for the kernel's SYN retries (minutes).
CONNECT_TIMEOUT_S = 5.0


def _backoff() -> EqualJitterBackoff:
    return EqualJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S)


def _options() -> dict[str, Any]:
    return {
        "retry_on_error": list(RETRY_ON),
        "health_check_interval": HEALTH_CHECK_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }


def connect(url: str) -> redis.Redis:
    """A client of the Redis at `url` (a pool, safe to share between threads)."""
    return redis.Redis.from_url(url, retry=Retry(_backoff(), RETRIES), **_options())


def connect_async(url: str) -> redis.asyncio.Redis:
    """An asyncio client of the Redis at `url`; bound to the event loop that first uses it."""
    retry = redis.asyncio.retry.Retry(_backoff(), RETRIES)
    return redis.asyncio.Redis.from_url(url, retry=retry, **_options())


def broker_transport_options() -> dict[str, Any]:
    """What kombu's Redis transport passes on to redis-py for the broker's connections.

    kombu takes no Retry object: a lost broker connection is re-established by Celery itself
    (`broker_connection_retry`, on by default), and the health checks, which kombu also uses
    to drop a BRPOP connection whose reply is overdue, find a connection that died quietly.
    """
    return {
        "health_check_interval": HEALTH_CHECK_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }
