#!/usr/bin/env python3
"""A webhook stand-in for the bench/ scripts: answers every POST 200 after
DELAY ms (GET /delay?ms=N sets it), counts requests and alerts per path;
GET /count?path=P prints "requests alerts first last" (Unix times of the
first and last request counted).

    python3 bench/webhook-standin.py PORT
"""
import asyncio, json, sys, time
port = int(sys.argv[1])
delay = 0.0
counts = {}
async def handle(r, w):
    global delay
    try:
        while True:
            line = await r.readline()
            if not line:
                return
            method, target, _ = line.decode().split(" ", 2)
            length = 0
            while True:
                h = await r.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode().partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            body = await r.readexactly(length) if length else b""
            if method == "GET":
                path, _, q = target.partition("?")
                if path == "/delay":
                    delay = float(q.split("=")[1]) / 1000
                    out = b"ok"
                else:
                    c = counts.get(q.split("=")[1], [0, 0, 0.0, 0.0])
                    out = ("%d %d %f %f" % tuple(c)).encode()
            else:
                if delay:
                    await asyncio.sleep(delay)
                alerts = len(json.loads(body).get("alerts", []))
                now = time.time()
                c = counts.setdefault(target, [0, 0, now, now])
                c[0] += 1; c[1] += alerts; c[3] = now
                out = b""
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
            await w.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    await s.serve_forever()
asyncio.run(main())
