"""Reproduce issue 12 cases 2, 4, 11, 12, 14 against a tinyserve binary.

usage: bench/hostile/services.py BINARY CASE [ARGS]
  CASE: metrics N | batch SECONDS attack|noattack | logforge | forwarded | upstream
Starts `BINARY serve` on the bundled models itself; prints statuses, counts and RSS (KiB).
"""
import json, os, socket, subprocess, sys, threading, time, re
BIN = sys.argv[1]
CASE = sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOGS = os.environ.get("TMPDIR", "/tmp")

def rss(pid):
    d = {}
    for l in open(f"/proc/{pid}/status"):
        k, _, v = l.partition(":")
        d[k] = v.strip()
    return int(d["VmRSS"].split()[0]), int(d["VmHWM"].split()[0])

def start(*args, env=None):
    p = subprocess.Popen([BIN, "serve", "--port", "0", "--models", f"{ROOT}/models", *args],
                         stdout=subprocess.PIPE, stderr=open(f"{LOGS}/tinyserve-hostile-{CASE}.log", "w"), env=env, cwd=ROOT)
    line = p.stdout.readline().decode()
    port = int(line.strip().rsplit(":", 1)[1])
    threading.Thread(target=lambda: p.stdout.read(), daemon=True).start()
    return p, port

def request(port, raw, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(raw)
    parts = []
    while True:
        try:
            c = s.recv(1 << 20)
        except socket.timeout:
            break
        if not c: break
        parts.append(c)
    s.close()
    return b"".join(parts)

def post(port, path, body, headers=""):
    b = json.dumps(body).encode()
    raw = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}Content-Length: {len(b)}\r\nConnection: close\r\n\r\n").encode() + b
    return request(port, raw)

def status(data):
    m = re.match(rb"HTTP/1\.\d (\d+)", data)
    return int(m.group(1)) if m else 0

if CASE == "metrics":
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    p, port = start()
    before = rss(p.pid)
    s = socket.create_connection(("127.0.0.1", port))
    got = [0]
    def reader():
        carry = b""
        while got[0] < n:
            c = s.recv(1 << 20)
            if not c: break
            buf = carry + c
            got[0] += buf.count(b"HTTP/1.1 ")
            carry = buf[-8:]
    t = threading.Thread(target=reader, daemon=True); t.start()
    t0 = time.time()
    for i in range(n):
        m = (f"M{i:08d}" + "X" * (16 * 1024 - 9 - 64)).encode()
        s.sendall(m + b" /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    t.join(120)
    print('answered', got[0], time.time()-t0, file=sys.stderr)
    after = rss(p.pid)
    t1 = time.time()
    scrape = request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 120)
    t2 = time.time()
    peak = rss(p.pid)
    series = sum(1 for l in scrape.split(b"\n") if l.startswith(b"tinyserve_requests_total{"))
    print(f"metrics: {n} requests sent, {got[0]} answered in {t1-t0:.1f}s; RSS {before[0]//1024} MB -> {after[0]//1024} MB (peak {after[1]//1024} MB); "
          f"/metrics {len(scrape)//1024} KiB, {series} request series, scrape {t2-t1:.1f}s, peak after scrape {peak[1]//1024} MB")
    p.kill()

elif CASE == "batch":
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 15
    attack = sys.argv[4] != "noattack" if len(sys.argv) > 4 else True
    p, port = start("--max-batch-size", "8")
    stop = time.time() + secs
    counts = {}
    lock = threading.Lock()
    def client(ids, tag):
        body = json.dumps({"inputs": [{"name": "input_ids", "shape": [1, len(ids)], "datatype": "INT64", "data": ids}]}).encode()
        s = socket.create_connection(("127.0.0.1", port))
        f = s.makefile("rb")
        while time.time() < stop:
            s.sendall(b"POST /v2/models/bytelm/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            line = f.readline(); st = int(line.split()[1])
            n = 0
            while True:
                h = f.readline()
                if h in (b"\r\n", b""): break
                if h.lower().startswith(b"content-length:"): n = int(h.split(b":")[1])
            f.read(n)
            with lock:
                counts[(tag, st)] = counts.get((tag, st), 0) + 1
    ts = [threading.Thread(target=client, args=([72, 105, 33], "normal")) for _ in range(3)]
    if attack:
        ts.append(threading.Thread(target=client, args=([72, 300, 33], "attacker")))
    for t in ts: t.start()
    for t in ts: t.join()
    errors = sum(1 for l in open(f"{LOGS}/tinyserve-hostile-{CASE}.log") if " ERROR " in l or '"level":"error"' in l)
    print("batch:", dict(sorted(counts.items())), "ERROR lines:", errors)
    p.kill()

elif CASE == "logforge":
    p, port = start()
    path = "/models/x%0A2026-12-05T00:00:00.000Z%20INFO%20203.0.113.1%20%22GET%20/admin%22%20200%200B%200.1ms%20rid=forged/predict"
    d = post(port, path, {"inputs": {"input": [[1, 2, 3, 4]]}})
    time.sleep(0.3)
    p.kill(); p.wait()
    print("logforge: status", status(d))
    print(open(f"{LOGS}/tinyserve-hostile-{CASE}.log").read())
    p, port = start("--log-format", "json")
    d = post(port, path.replace("%0A", "%0D%1B[31m"), {"inputs": {"input": [[1, 2, 3, 4]]}})
    time.sleep(0.3); p.kill(); p.wait()
    print(open(f"{LOGS}/tinyserve-hostile-{CASE}.log").read())

elif CASE == "forwarded":
    p, port = start("--forwarded-allow-ips", "127.0.0.1")
    d = request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\nForwarded: for=6.6.6.6\r\nConnection: close\r\n\r\n")
    time.sleep(0.3); p.kill(); p.wait()
    print("forwarded: status", status(d)); print(open(f"{LOGS}/tinyserve-hostile-{CASE}.log").read())

elif CASE == "upstream":
    # a fake upstream: /v1/chat/completions answers 101 for model "switch", 500 with a secret otherwise
    ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(16)
    uport = ls.getsockname()[1]
    def serve():
        while True:
            c, _ = ls.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += c.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(body) < n: body += c.recv(65536)
            if b'"switch"' in body:
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello raw bytes")
            else:
                secret = b'{"error": "db password=hunter2 at postgres://10.0.0.5"}'
                c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: " + str(len(secret)).encode() + b"\r\n\r\n" + secret)
            time.sleep(0.2); c.close()
    threading.Thread(target=serve, daemon=True).start()
    p, port = start("--upstream", f"internal=http://127.0.0.1:{uport}/v1")
    for model in ["internal/switch", "internal/crash"]:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(1.0)
        s.settimeout(2)
        try: d = s.recv(65536)
        except socket.timeout: d = b"(nothing)"
        # is the connection still usable?
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); more = s.recv(65536)
        except Exception as e: more = repr(e).encode()
        print(f"upstream {model}:", d.decode(errors="replace")); print("  then /healthz on the same connection:", more[:40])
    time.sleep(0.3); p.kill(); p.wait()
    print("log:", open(f"{LOGS}/tinyserve-hostile-{CASE}.log").read())
