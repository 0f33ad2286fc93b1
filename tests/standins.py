"""Servers the Rust tests start where a real protocol implementation is
needed that the test crate does not have: an SMTP server (aiosmtpd) with
STARTTLS, implicit TLS and AUTH, and an HTTPS server with a certificate the
test made. Each writes what it saw, one JSON object a line, to --record.

    standins.py smtp  --port P --record FILE [--tls starttls|tls] [--cert C --key K] [--auth USER:PASS]
    standins.py https --port P --record FILE --cert C --key K --body JSON
"""

import argparse
import asyncio
import http.server
import json
import ssl
import sys


def record(path, event):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


def server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def smtp(args):
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            record(
                args.record,
                {
                    "event": "mail",
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    # aiosmtpd sets session.ssl after STARTTLS only; implicit TLS wraps the whole session.
                    "tls": session.ssl is not None or args.tls == "tls",
                    "user": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
                    "data": envelope.content.decode("utf-8", "replace"),
                },
            )
            return "250 OK queued"

    class Recording(SMTP):
        async def smtp_STARTTLS(self, arg):
            record(args.record, {"event": "starttls"})
            return await super().smtp_STARTTLS(arg)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and f"{auth_data.login.decode()}:{auth_data.password.decode()}" == args.auth
        record(args.record, {"event": "auth", "mechanism": mechanism, "ok": ok})
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    kw = {}
    if args.auth:
        # Offered only after STARTTLS unless the connection is plain on purpose.
        # With implicit TLS the session is TLS from the first byte, which
        # aiosmtpd's check (made for STARTTLS) does not see: no check needed.
        kw.update(authenticator=authenticator, auth_required=True, auth_require_tls=args.tls == "starttls")
    if args.tls == "starttls":
        kw.update(tls_context=server_context(args.cert, args.key), require_starttls=True)
    wrap = server_context(args.cert, args.key) if args.tls == "tls" else None

    loop = asyncio.new_event_loop()
    loop.run_until_complete(
        loop.create_server(lambda: Recording(Handler(), hostname="standin", **kw), "127.0.0.1", args.port, ssl=wrap)
    )
    loop.run_forever()


def https(args):
    body = args.body.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            record(args.record, {"event": "get", "path": self.path})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    ctx = server_context(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.serve_forever()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["smtp", "https"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--tls", choices=["starttls", "tls"])
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth")
    p.add_argument("--body", default="{}")
    args = p.parse_args()
    (smtp if args.kind == "smtp" else https)(args)


if __name__ == "__main__":
    sys.exit(main())
