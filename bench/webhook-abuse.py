#!/usr/bin/env python3
"""Unauthenticated abuse of POST /webhook, measured against a lookout binary:
the time to an answer for a stalled body, whether `Expect: 100-continue` gets
`100 Continue` without credentials, and RSS before and after 150 parallel
unauthenticated 1 MB uploads.

usage: bench/webhook-abuse.py [LOOKOUT_BIN] [PORT]
       (defaults: target/release/lookout, else target/debug/lookout; a free port)
Needs only python3 and a built lookout; every wait is bounded.
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    if len(sys.argv) > 3 or (len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help")):
        sys.exit(__doc__)
    default = next((p for p in ("target/release/lookout", "target/debug/lookout") if os.path.exists(os.path.join(ROOT, p))), None)
    binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else (default and os.path.join(ROOT, default))
    if not binary or not os.access(binary, os.X_OK):
        sys.exit("bench/webhook-abuse.py: no lookout binary: build one (cargo build --release) or name it")
    port = int(sys.argv[2]) if len(sys.argv) > 2 else free_port()
    d = tempfile.mkdtemp()
    with open(f"{d}/l.yaml", "w") as f:
        f.write(f"server:\n  listen: 127.0.0.1:{port}\ndata_dir: {d}/data\nprobe_files: []\n"
                "relay:\n  auth:\n    bearer_token: tok\n  destinations:\n    - {name: log, type: log}\n")
    p = subprocess.Popen([binary, "run", "-c", f"{d}/l.yaml"], cwd=d, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("bench/webhook-abuse.py: lookout did not listen within 10 s")
        measure(p.pid, port)
    finally:
        p.terminate()
        p.wait(timeout=30)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def head(s):
    """The answer's head, or what arrived before the peer closed or timed out."""
    b = b""
    try:
        while b"\r\n\r\n" not in b:
            c = s.recv(1)
            if not c:
                break
            b += c
    except OSError:
        pass
    return b.decode(errors="replace")


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024


def measure(pid, port):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(40)
    t = time.time()
    s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    h = head(s)
    print(f"stalled body: {h.splitlines()[0] if h else 'no answer'} after {time.time() - t:.3f} s")
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n")
    h = head(s)
    print("Expect: 100-continue without credentials ->", h.splitlines()[0] if h else "nothing")
    before = rss(pid)

    def upload():
        try:
            c = socket.create_connection(("127.0.0.1", port))
            c.settimeout(30)
            c.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000000\r\n\r\n" + b"x" * 1000000)
            head(c)
        except OSError:
            pass

    threads = [threading.Thread(target=upload) for _ in range(150)]
    t = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    print(f"RSS before {before} MB, after 150 unauthenticated 1 MB uploads {rss(pid)} MB ({time.time() - t:.2f} s)")


if __name__ == "__main__":
    main()
