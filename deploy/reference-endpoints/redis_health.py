"""Redis health, framework-independent: the contract both backends serve.

``collect(client)`` returns ``(status_code, body)``: 200 with the Redis figures,
or 503 with ``{"detail": reason}``. ``client_from_env()`` builds the client (and
so the connection pool) from the REDIS_* environment; build it once per process.
See README.md for the contract.
"""

import os
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 2.0


def client_from_env(environ=os.environ) -> redis.Redis:
    """A client with its own connection pool, configured from REDIS_*.

    REDIS_URL (redis://, rediss://, unix://; may carry user, password and db)
    wins; otherwise REDIS_HOST, REDIS_PORT, REDIS_USERNAME, REDIS_PASSWORD and
    REDIS_DB. Creating it does not connect.
    """
    options = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": READ_TIMEOUT_S,
        # A probe reports what it sees: no hidden retries (redis-py retries 10
        # times by default, which turns one hung Redis into a 20 s+ request).
        "retry": Retry(NoBackoff(), 0),
        # RESP2 works on every Redis version; RESP3 (redis-py's default) sends
        # HELLO, which Redis < 6 rejects.
        "protocol": 2,
    }
    url = environ.get("REDIS_URL")
    if url:
        return redis.Redis.from_url(url, **options)
    return redis.Redis(
        host=environ.get("REDIS_HOST") or "127.0.0.1",
        port=int(environ.get("REDIS_PORT") or 6379),
        username=environ.get("REDIS_USERNAME") or None,
        password=environ.get("REDIS_PASSWORD") or None,
        db=int(environ.get("REDIS_DB") or 0),
        **options,
    )


def target(client: redis.Redis) -> str:
    """Where the client points, without credentials: host:port/db or path/db."""
    kw = client.connection_pool.connection_kwargs
    where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
    return f"{where}/{kw.get('db', 0)}"


def hit_ratio(hits: int, misses: int):
    """hits / (hits + misses); None (JSON null) before the first lookup."""
    total = hits + misses
    return hits / total if total else None


def collect(client: redis.Redis):
    """Probe Redis once: (200, body) or (503, {"detail": reason})."""
    try:
        # One pooled connection for the whole probe, connected (and
        # authenticated) before the PING, so latency_ms is the PING round trip
        # alone, never connection setup.
        with client.client() as conn:
            started = time.perf_counter()
            pong = conn.ping()  # redis-py turns the reply into "was it PONG"
            latency_ms = (time.perf_counter() - started) * 1000.0
            if pong is not True:
                return 503, {"detail": f"Redis at {target(client)} did not answer PING with PONG"}
            info = _info(conn)
            maxclients = info.get("maxclients")  # INFO clients has it on Redis >= 7
            if maxclients is None:
                maxclients = _config_maxclients(conn)
    except redis.RedisError as exc:
        return 503, {"detail": _reason(client, exc)}

    try:
        hits = int(info["keyspace_hits"])
        misses = int(info["keyspace_misses"])
        figures = {
            "ping": "PONG",
            "latency_ms": round(latency_ms, 3),
            "hits": hits,
            "misses": misses,
            "hit_ratio": hit_ratio(hits, misses),
            "connected_clients": int(info["connected_clients"]),
            "maxclients": None if maxclients is None else int(maxclients),
            "used_memory": int(info["used_memory"]),
            "maxmemory": int(info["maxmemory"]),
            "mem_fragmentation_ratio": float(info["mem_fragmentation_ratio"]),
        }
    except KeyError as exc:
        return 503, {"detail": f"Redis at {target(client)}: INFO reply lacks {exc}"}
    except (TypeError, ValueError) as exc:
        return 503, {"detail": f"Redis at {target(client)}: unreadable INFO reply: {exc}"}
    return 200, {"status": "ok", "redis": figures}


def _info(conn: redis.Redis) -> dict:
    """The clients, memory and stats sections of INFO, in one call."""
    try:
        return conn.info("clients", "memory", "stats")  # several sections: Redis >= 7
    except redis.ResponseError:
        return conn.info()  # Redis < 7: the default sections include all three


def _config_maxclients(conn: redis.Redis):
    try:
        value = conn.config_get("maxclients").get("maxclients")
    except redis.ResponseError:  # CONFIG renamed away or denied by ACL
        return None
    return None if value is None else int(value)


def _reason(client: redis.Redis, exc: Exception) -> str:
    """A human-readable failure reason that never carries the password."""
    text = f"Redis at {target(client)} unavailable: {type(exc).__name__}: {exc}"
    password = client.connection_pool.connection_kwargs.get("password")
    if password:
        text = text.replace(str(password), "***")
    return text
