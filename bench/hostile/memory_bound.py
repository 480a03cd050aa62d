"""Peak RSS over idle for K concurrent copies of the worst body of each path (the memory bound).

usage (from the repository root): python3 bench/hostile/memory_bound.py BINARY K
"""
import json, os, socket, subprocess, sys, time, threading, struct
BIN = sys.argv[1]; K = int(sys.argv[2]); extra = sys.argv[3:]
def start():
    p = subprocess.Popen([BIN, "serve", "--port", "0", "--log-level", "error", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    a = p.stdout.readline().strip().split("http://")[1]; h, pt = a.rsplit(":", 1); return p, (h, int(pt))
def rss(p):
    d = {}
    for l in open(f"/proc/{p.pid}/status"):
        k, v = l.split(":", 1)
        if k in ("VmRSS", "VmHWM"): d[k] = int(v.split()[0])
    return d["VmRSS"], d["VmHWM"]
def post(addr, path, body, headers=None):
    s = socket.create_connection(addr, timeout=300)
    h = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Host": "x", "Connection": "close"}; h.update(headers or {})
    s.sendall((f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode() + body)
    data = b""
    while True:
        c = s.recv(1 << 20)
        if not c: break
        data += c
    return data.split(b" ", 2)[1].decode(), len(data)
MB = 10 * 1024 * 1024
rows = MB // 10 - 1
iris10 = b"[" + b",".join([b"[0,0,0,0]"] * rows) + b"]"
n = (MB - 200) // 2
int64 = (b'{"inputs":[{"name":"input_ids","shape":[1,%d],"datatype":"INT64","data":[' % n) + b",".join([b"0"] * n) + b"]}]}"
br = (MB - 300) // 16
hdr = json.dumps({"inputs": [{"name": "input", "shape": [br, 4], "datatype": "FP32", "parameters": {"binary_data_size": br * 16}}]}).encode()
binary = hdr + b"\0" * (br * 16)
r = 370000
under = b"[" + b",".join([b"[5.1,3.5,1.4,0.2]"] * r) + b"]"
kinds = {
  "iris predict 10 MB of [0,0,0,0] (answer over the limit)": ("/models/iris/predict", iris10, None),
  "v2 bytelm 10 MB of INT64 zeros (refused from the shapes)": ("/v2/models/bytelm/infer", int64, None),
  "v2 iris 10 MB binary FP32 (answer over the limit)": ("/v2/models/iris/infer", binary, {"Inference-Header-Content-Length": str(len(hdr)), "Content-Type": "application/octet-stream"}),
  "iris predict 6.3 MB, 370k rows (answer just under 16 MiB)": ("/models/iris/predict", under, None),
}
for name, (path, body, headers) in kinds.items():
    p, addr = start(); time.sleep(0.3); idle = rss(p)[0]
    res = []
    ts = [threading.Thread(target=lambda: res.append(post(addr, path, body, headers))) for _ in range(K)]
    [t.start() for t in ts]; [t.join() for t in ts]
    now, peak = rss(p)
    print(f"{name}: K={K} statuses {sorted(set(r[0] for r in res))} answer bytes {res[0][1]} idle {idle//1024} MiB peak +{(peak-idle)//1024} MiB (+{(peak-idle)//1024//K} MiB per request) kept +{(now-idle)//1024} MiB")
    p.terminate(); p.wait()
