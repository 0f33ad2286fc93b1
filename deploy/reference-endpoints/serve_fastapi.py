#!/usr/bin/env python3
"""Stand-in FastAPI backend: GET /api/health/redis from the drop-in fastapi_health router.

    python serve_fastapi.py --host 127.0.0.1 --port 8002

Served by uvicorn. One access-log line per request on stderr; SIGTERM or
SIGINT stops it gracefully with exit status 0. Redis settings come from the
REDIS_* environment; LOOKOUT_REF_LIE is test-only (see standin.py).
"""

import copy
import signal
import sys

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG

import standin


def main() -> int:
    args = standin.arg_parser("Stand-in FastAPI backend serving GET /api/health/redis", 8002).parse_args()
    standin.install_lies()

    import fastapi_health
    import redis_health

    app = FastAPI(title="reference FastAPI backend", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(fastapi_health.router)

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"  # uvicorn's default: stdout
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=log_config,
        access_log=True,
        timeout_graceful_shutdown=5,
    )
    # After its graceful shutdown uvicorn re-raises the signal it caught under
    # the handler that was there before it: make that a no-op so the process
    # exits with status 0 instead of dying of the signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    standin.log(
        f"serving GET /api/health/redis on {standin.base_url(args.host, args.port)} "
        f"(Redis {redis_health.target(fastapi_health._client)})"
    )
    uvicorn.Server(config).run()
    standin.log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
