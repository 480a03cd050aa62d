"""Server CPU per fan-out request, two tinyserve-bench builds side by side (A B A B...):

    python3 bench/fanout_ab.py OLD/tinyserve-bench NEW/tinyserve-bench [rounds] [connections]

Each round starts each build fresh against one mock upstream (50 ms), warms it for 2 s, then
drives GET /fanout with wrk for 6 s; CPU = the server's user + system time / requests
(/proc/PID/stat). Needs wrk. Run from the repository root (it serves models/tests/multi).
"""
import os, re, subprocess, sys, time
old, new = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
conns = int(sys.argv[4]) if len(sys.argv) > 4 else 64
tick = os.sysconf("SC_CLK_TCK")
def start(args):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    return p, line.strip().split()[-1]
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
up, upurl = start([old, "upstream", "--port", "0", "--delay-ms", "50"])
models = "models/tests/multi"
res = {"old": [], "new": []}
for r in range(rounds):
    for name, binary in (("old", old), ("new", new)):
        p, url = start([binary, "serve", "--models", models, "--upstream", upurl, "--port", "0"])
        subprocess.run(["wrk", "-t2", f"-c{conns}", "-d2s", url + "/fanout"], capture_output=True)
        c0 = cpu(p.pid)
        out = subprocess.run(["wrk", "-t2", f"-c{conns}", "-d6s", "--timeout", "5s", url + "/fanout"], capture_output=True, text=True).stdout
        c1 = cpu(p.pid)
        n = int(re.search(r"(\d+) requests in", out).group(1))
        errs = re.search(r"Non-2xx.*?(\d+)", out)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        res[name].append(((c1 - c0) / n * 1e6, rps))
        print(f"round {r} {name}: {rps:.0f} req/s, {(c1-c0)/n*1e6:.0f} us CPU/request, errors {errs.group(1) if errs else 0}", flush=True)
        p.terminate(); p.wait()
up.terminate()
for name in res:
    print(name, "CPU us/req:", sorted(round(x[0]) for x in res[name]), "req/s:", sorted(round(x[1]) for x in res[name]))
