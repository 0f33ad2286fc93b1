#!/usr/bin/env python3
"""Stand-in Django backend: GET /health/redis/ from the drop-in django_health app.

    python serve_django.py --host 127.0.0.1 --port 8001

A minimal Django project configured in code (no database, DEBUG off) served by
a threaded wsgiref server: each request has its own thread, so one request
waiting on a hung Redis (bounded by the client's socket timeouts) does not hold
up the others. One line per request on stderr; SIGTERM or SIGINT stops it with
exit status 0 after the requests in flight finish. Redis settings come from the
REDIS_* environment; LOOKOUT_REF_LIE is test-only (see standin.py).
"""

import logging
import secrets
import signal
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import standin


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True
    request_queue_size = 128  # socketserver's default of 5 drops bursts of connections


class RequestHandler(WSGIRequestHandler):
    timeout = 10  # seconds a client may take to send its request

    def log_message(self, format, *args):  # one line per request, on stderr
        standin.log(f"{self.address_string()} - [{self.log_date_time_string()}] {format % args}")


def django_app(host: str, extra_hosts: list):
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    allowed = ["127.0.0.1", "localhost", "[::1]"]
    for name in [host, *extra_hosts]:
        name = f"[{name}]" if ":" in name else name
        if name not in ("", "0.0.0.0", "[::]") and name not in allowed:
            allowed.append(name)
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=allowed,
        SECRET_KEY=secrets.token_urlsafe(32),  # nothing here signs anything
        ROOT_URLCONF="django_health.urls",  # as a project's include("django_health.urls") at ""
        INSTALLED_APPS=[],
        # As in a typical project: checks ALLOWED_HOSTS, redirects to the slash.
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()
    # With DEBUG off Django prints nothing on a crash in a view: show the traceback.
    crashes = logging.StreamHandler(sys.stderr)
    crashes.addFilter(lambda record: record.exc_info is not None)
    logging.getLogger("django.request").addHandler(crashes)
    return get_wsgi_application()


def main() -> int:
    parser = standin.arg_parser("Stand-in Django backend serving GET /health/redis/", 8001)
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="one more ALLOWED_HOSTS entry, e.g. the name other containers use (repeatable)",
    )
    args = parser.parse_args()
    standin.install_lies()
    app = django_app(args.host, args.allowed_host)

    import redis_health
    from django_health import views

    if ":" in args.host:
        ThreadingWSGIServer.address_family = socket.AF_INET6
    try:
        server = ThreadingWSGIServer((args.host, args.port), RequestHandler)
    except OSError as exc:
        standin.log(f"cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    server.set_app(app)

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return: not from this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    standin.log(
        f"serving GET /health/redis/ on {standin.base_url(args.host, args.port)} "
        f"(Redis {redis_health.target(views._client)})"
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    standin.log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
