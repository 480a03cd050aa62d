"""Reproduce issue 12 cases 1, 3, 8 and 10 (memory per request) against a tinyserve binary.

usage (from the repository root): python3 bench/hostile/memory.py BINARY CASE   (CASE: 1, 3, 8, 10)
Starts `BINARY serve` on the bundled models; prints status, answer size and (VmRSS, VmHWM) in KiB.
"""
import json, os, socket, subprocess, sys, time, threading, struct, resource

BIN = sys.argv[1]
CASE = sys.argv[2]

def start(extra=()):
    p = subprocess.Popen([BIN, "serve", "--port", "0", "--log-level", "error", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    addr = line.strip().split("http://")[1]
    host, port = addr.rsplit(":", 1)
    return p, (host, int(port))

def rss(p):
    d = {}
    for l in open(f"/proc/{p.pid}/status"):
        k, v = l.split(":", 1)
        if k in ("VmRSS", "VmHWM"):
            d[k] = int(v.split()[0])
    return d["VmRSS"], d["VmHWM"]

def cpu(p):
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def post(addr, path, body, headers=None, read=True):
    s = socket.create_connection(addr, timeout=120)
    h = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Host": "x", "Connection": "close"}
    h.update(headers or {})
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    s.sendall(head.encode() + body)
    if not read:
        return s
    data = b""
    try:
        while True:
            c = s.recv(1 << 20)
            if not c: break
            data += c
    except Exception as e:
        return ("ERR", str(e), len(data))
    s.close()
    status = data.split(b" ", 2)[1].decode() if data else "none"
    hend = data.find(b"\r\n\r\n")
    return status, len(data) - hend - 4, data[hend+4:hend+4+200]

p, addr = start()
time.sleep(0.3)
idle = rss(p)
print("idle", idle)
t0 = cpu(p)
if CASE == "1":
    for n in (40000, 100000):
        body = json.dumps({"inputs": [{"name": "input_ids", "shape": [1, n], "datatype": "INT64", "data": [65]*n}]}).encode()
        r = post(addr, "/v2/models/bytelm/infer", body)
        print(f"v2 [1,{n}] body {len(body)}B ->", r[0], "resp bytes", r[1], r[2][:120], "rss", rss(p) if p.poll() is None else ("DEAD", p.poll()))
        if p.poll() is not None:
            print(p.stderr.read()[-300:]); p, addr = start(); time.sleep(0.3)
    body = json.dumps({"inputs": {"input_ids": [[65]*40000]}}).encode()
    r = post(addr, "/models/bytelm/predict", body)
    print("predict [1,40000] ->", r[0], "resp bytes", r[1], r[2][:120], "rss", rss(p) if p.poll() is None else "DEAD")
elif CASE == "3":
    hdr = json.dumps({"inputs": [{"name": "input_ids", "shape": [4194304, 0], "datatype": "INT64", "parameters": {"binary_data_size": 0}}]}).encode()
    r = post(addr, "/v2/models/bytelm/infer", hdr, {"Inference-Header-Content-Length": str(len(hdr)), "Content-Type": "application/octet-stream"})
    print("binary [4194304,0] body", len(hdr), "->", r[0], r[2][:200], "rss", rss(p))
    js = json.dumps({"inputs": [{"name": "input_ids", "shape": [4194304, 0], "datatype": "INT64", "data": []}]}).encode()
    r = post(addr, "/v2/models/bytelm/infer", js)
    print("json [4194304,0] ->", r[0], r[2][:200], "rss", rss(p))
elif CASE == "8":
    n = 10*1024*1024 // 10
    body = ("[" + ",".join(["[0,0,0,0]"] * (n - 1)) + "]").encode()
    body = body[:10*1024*1024]
    if not body.endswith(b"]]"):
        body = body[:body.rfind(b"]")+1] + b"]"
    print("body bytes", len(body))
    r = post(addr, "/models/iris/predict", body)
    print("iris predict 10MB ->", r[0], r[1], r[2][:150], "rss", rss(p))
    thr = []
    res = []
    for i in range(3):
        t = threading.Thread(target=lambda: res.append(post(addr, "/models/iris/predict", body)[:2])); t.start(); thr.append(t)
    for t in thr: t.join()
    print("3 at once ->", res, "rss", rss(p))
    prompt = "a" * (10*1024*1024 - 200)
    body = json.dumps({"model": "bytelm", "prompt": prompt, "max_tokens": 1, "temperature": 0}).encode()
    r = post(addr, "/v1/completions", body)
    print("v1 10MB prompt ->", r[0], r[2][:200], "rss", rss(p))
elif CASE == "10":
    body = json.dumps({"model": "bytelm", "prompt": "Hello", "max_tokens": 4096, "temperature": 0}).encode()
    socks = [post(addr, "/v1/completions", body, read=False) for _ in range(6)]
    for s in socks: s.close()
    # wait until CPU stops rising
    last = cpu(p); time.sleep(2)
    while cpu(p) - last > 0.05:
        last = cpu(p); time.sleep(2)
    print("cpu seconds spent after 6 closed clients:", round(cpu(p) - t0, 2), "rss", rss(p))
print("final rss", rss(p), "alive", p.poll() is None)
p.terminate()
