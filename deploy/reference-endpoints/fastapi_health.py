"""GET /api/health/redis: the Redis health contract (see README.md) for FastAPI.

    from fastapi_health import router
    app.include_router(router)

The route is async and runs the blocking probe in Starlette's thread pool
rather than using redis.asyncio, for two reasons. Both backends then share one
implementation of the contract (redis_health.collect), so they cannot drift
apart. And latency_ms is timed in a thread that does nothing else: timed inside
a coroutine, it would also count the time the event loop spends on other
requests before resuming it. The socket timeouts bound how long a thread can
be held by a hung Redis.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

import redis_health

router = APIRouter()

# One client, and so one connection pool, per process: requests reuse
# connections instead of reconnecting. Creating it does not connect.
_client = redis_health.client_from_env()

# What Django's never_cache sends, so both backends answer alike.
_NO_CACHE = {"Cache-Control": "max-age=0, no-cache, no-store, must-revalidate, private"}


@router.get("/api/health/redis")
async def redis_health_check() -> JSONResponse:
    status, body = await run_in_threadpool(redis_health.collect, _client)
    return JSONResponse(body, status_code=status, headers=_NO_CACHE)
