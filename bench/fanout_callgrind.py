"""User-space instructions per fan-out request, two tinyserve-bench builds in turn, counted
by valgrind's callgrind (a count, not a time: it holds on a busy machine, where
bench/fanout_ab.py's CPU times do not):

    python3 bench/fanout_callgrind.py OLD/tinyserve-bench NEW/tinyserve-bench [rounds]

Each round starts each build under callgrind against one mock upstream (5 ms), warms it with
wrk for 5 s, zeroes the counters, drives GET /fanout (3 calls) for 10 s at 4 connections, and
divides the instructions by the requests. The kernel's share (system calls, loopback TCP) is
not counted: compare it with `strace -c`. Needs valgrind and wrk. Run from the repository root.
"""
import glob, os, re, subprocess, sys, tempfile, time

old, new = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
work = tempfile.mkdtemp(prefix="fanout-callgrind-")


def first_line(p):
    return p.stdout.readline().strip().split()[-1]


def wait_listening(path, limit=180):
    end = time.time() + limit
    while time.time() < end:
        text = open(path).read() if os.path.exists(path) else ""
        if "listening" in text:
            return text.split("listening", 1)[1].split()[-1]
        time.sleep(0.5)
    sys.exit(f"no listening line in {path}")


up = subprocess.Popen([old, "upstream", "--port", "0", "--delay-ms", "5"],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
upurl = first_line(up)
results = {"old": [], "new": []}
for r in range(rounds):
    for name, binary in (("old", old), ("new", new)):
        out = f"{work}/{name}{r}.out"
        prefix = f"{work}/cg.{name}{r}"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}.%p", binary, "serve",
             "--models", "models/tests/multi", "--upstream", upurl, "--port", "0"],
            stdout=open(out, "w"), stderr=subprocess.DEVNULL)
        url = wait_listening(out)
        subprocess.run(["wrk", "-t1", "-c4", "-d5s", url + "/fanout"], capture_output=True)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True)
        text = subprocess.run(["wrk", "-t1", "-c4", "-d10s", url + "/fanout"],
                              capture_output=True, text=True).stdout
        subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True)
        time.sleep(2)
        server.terminate()
        server.wait()
        requests = int(re.search(r"(\d+) requests in", text).group(1))
        dumps = glob.glob(f"{prefix}.*.1")
        summary = int(re.search(r"^summary: (\d+)", open(dumps[0]).read(), re.M).group(1))
        per = summary / requests
        results[name].append(per)
        print(f"round {r} {name}: {requests} requests, {per:,.0f} instructions per request",
              flush=True)
up.terminate()
for name, values in results.items():
    print(name, "instructions per request:", [f"{v:,.0f}" for v in sorted(values)])
print(f"new / old: {sum(results['new']) / sum(results['old']):.3f}")
