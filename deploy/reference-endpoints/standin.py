"""Shared by the stand-in servers (serve_django.py, serve_fastapi.py) only.

Not part of either drop-in: a project copies redis_health.py with
django_health/ or fastapi_health.py, never this file.

TEST-ONLY lies. LOOKOUT_REF_LIE makes a stand-in endpoint report wrong figures
so that a test can check that lookout's cross-check against Redis and
Prometheus catches it. A comma-separated list of:

  frozen_counters  hits and misses (and so hit_ratio) stay at the first values
                   ever read, forever
  memory_kib       used_memory and maxmemory in KiB instead of bytes
  latency_seconds  latency_ms in seconds (1000 times too small)

Pointing one backend at the wrong Redis needs no knob: give it another
instance's REDIS_URL. (Another database of the same instance would not do:
every figure in the contract is server-wide.)
"""

import argparse
import os
import sys
import threading

import redis_health

LIE_ENV = "LOOKOUT_REF_LIE"
LIES = ("frozen_counters", "memory_kib", "latency_seconds")


def arg_parser(description: str, default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, help=f"port to listen on (default {default_port})")
    return parser


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def install_lies(environ=os.environ) -> list:
    """Wrap redis_health.collect with the lies LOOKOUT_REF_LIE asks for."""
    lies = [name.strip() for name in environ.get(LIE_ENV, "").split(",") if name.strip()]
    unknown = sorted(set(lies) - set(LIES))
    if unknown:
        raise SystemExit(f"{LIE_ENV}: unknown {', '.join(unknown)}; known: {', '.join(LIES)}")
    if not lies:
        return lies

    honest = redis_health.collect
    first_counters = []  # [(hits, misses)] once read
    lock = threading.Lock()

    def lying_collect(client):
        status, body = honest(client)
        if status != 200:
            return status, body
        figures = body["redis"]
        if "frozen_counters" in lies:
            with lock:
                if not first_counters:
                    first_counters.append((figures["hits"], figures["misses"]))
                hits, misses = first_counters[0]
            figures["hits"], figures["misses"] = hits, misses
            figures["hit_ratio"] = redis_health.hit_ratio(hits, misses)
        if "memory_kib" in lies:
            figures["used_memory"] //= 1024
            figures["maxmemory"] //= 1024
        if "latency_seconds" in lies:
            figures["latency_ms"] /= 1000.0
        return status, body

    redis_health.collect = lying_collect
    log(f"TEST ONLY: {LIE_ENV}={','.join(lies)}: this endpoint reports wrong figures on purpose")
    return lies
