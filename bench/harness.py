#!/usr/bin/env python3
"""The benchmark's orchestrator, started by bench/run (which installs and builds everything
first). Runs every (scenario, server, concurrency) point of the matrix below, writes
bench/results/results.json, then bench/report.py turns it into results.md and the plots.

Usage: bench/run [--quick] [--only SCENARIO[,SCENARIO]] [--servers NAME[,NAME]] [--seconds S]

`fanout-tls` is the fan-out with the mock upstream behind nginx terminating TLS (a CA made at
bench time, trusted through SSL_CERT_FILE; bench/tls_front.py); it is not part of the default
matrix: `bench/run --only fanout,fanout-tls`.

Each server is started fresh for each scenario (so its peak memory belongs to that scenario),
warmed up for a second, then driven at each concurrency for a fixed time: wrk for request /
response routes, `tinyserve-bench sse-load` for streams (it records time to first event).
The configuration is data: SERVERS and SCENARIOS. A server that `requires` a flag that
`tinyserve serve --help` does not list is skipped and the skip is recorded.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from tls_front import TlsFront

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MODELS = BENCH / "results" / "models"
TINYSERVE = REPO / "target" / "release" / "tinyserve"
# bench/run builds tinyserve-bench into the crate's own target/ (it shares most dependencies).
BENCH_BIN = REPO / "target" / "release" / "tinyserve-bench"
PYTHON = BENCH / ".venv" / "bin"
CORES = os.cpu_count() or 2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------------------------
# Servers. `predict` is the command for the predict scenarios, `app` for fan-out and streams;
# a Python baseline serves both from one app. {port}, {models}, {upstream} are filled in.
# ---------------------------------------------------------------------------------------------
TINYSERVE_SERVE = [str(TINYSERVE), "serve", "--models", "{models}", "--port", "{port}",
                   "--log-level", "warn", "--shutdown-grace", "0"]
# Sessions: tinyserve's default (one session per model, one intra-op thread per core) for
# plain serving. With batching, two sessions with one thread each: a batch is a matrix
# product, compute-bound, and two batches in parallel beat one batch split over two threads
# (MLP at c=64: about 7,500 against 6,300 requests/s here).
POOL = ["--sessions-per-model", str(CORES), "--intra-threads", "1"]
BENCH_SERVER = [str(BENCH_BIN), "serve", "--models", "{models}", "--upstream", "{upstream}",
                "--port", "{port}", "--workers", "512", "--max-streams", "384"]
GUNICORN = [str(PYTHON / "gunicorn"), "--chdir", str(BENCH / "servers"),
            "--bind", "127.0.0.1:{port}", "--workers", str(2 * CORES + 1)]
UVICORN = [str(PYTHON / "uvicorn"), "fastapi_app:app", "--app-dir", str(BENCH / "servers"),
           "--host", "127.0.0.1", "--port", "{port}", "--loop", "uvloop", "--http", "httptools",
           "--no-access-log", "--log-level", "warning"]

SERVERS = [
    {"name": "tinyserve", "family": "tinyserve",
     "settings": f"`tinyserve serve` with its defaults: 256 worker turns; sessions by model "
                 f"size (iris: {CORES} sessions x 1 intra-op thread; the MLP: 1 session x "
                 f"{CORES} threads); access log off. Fan-out and "
                 "SSE: `tinyserve-bench serve` (the same built-in routes plus /fanout and /sse, "
                 "same model defaults), 512 workers, 384 streams at most; /fanout as the "
                 "README shows it: FanOut::shared()?.run_for(req, calls, 1 s), nothing sized",
     "predict": TINYSERVE_SERVE, "app": BENCH_SERVER, "health": "/healthz"},
    {"name": "tinyserve-batch", "family": "tinyserve",
     "settings": f"`tinyserve serve --workers 128 --max-batch-size 32 --batch-timeout-us 500 "
                 f"--sessions-per-model {CORES} --intra-threads 1` (predict scenarios only)",
     "requires": ["--max-batch-size", "--batch-timeout-us"],
     "predict": TINYSERVE_SERVE + ["--workers", "128", "--max-batch-size", "32",
                                   "--batch-timeout-us", "500"] + POOL,
     "app": None, "health": "/healthz"},
    {"name": "flask-sync", "family": "flask",
     "settings": f"gunicorn, {2 * CORES + 1} sync workers (2 x cores + 1)",
     "predict": GUNICORN + ["flask_app:app"], "health": "/healthz"},
    {"name": "flask-gthread", "family": "flask",
     "settings": f"gunicorn -k gthread, {2 * CORES + 1} workers x {4 * CORES} threads",
     "predict": GUNICORN + ["--worker-class", "gthread", "--threads", str(4 * CORES),
                            "flask_app:app"], "health": "/healthz"},
    {"name": "fastapi-1w", "family": "fastapi",
     "settings": "uvicorn, 1 worker, uvloop + httptools, access log off",
     "predict": UVICORN + ["--workers", "1"], "health": "/healthz"},
    {"name": "fastapi-2w", "family": "fastapi",
     "settings": "uvicorn, 2 workers, uvloop + httptools, access log off",
     "predict": UVICORN + ["--workers", "2"], "health": "/healthz"},
]
# Before/after comparisons: TINYSERVE_BASELINE=DIR adds "tinyserve-baseline", the same
# commands with DIR/tinyserve and DIR/tinyserve-bench (an earlier build), to run side by side
# with `--servers tinyserve,tinyserve-baseline`.
if os.environ.get("TINYSERVE_BASELINE"):
    baseline = Path(os.environ["TINYSERVE_BASELINE"])
    swap = {str(TINYSERVE): str(baseline / "tinyserve"),
            str(BENCH_BIN): str(baseline / "tinyserve-bench")}
    SERVERS.append({"name": "tinyserve-baseline", "family": "tinyserve",
                    "settings": "as tinyserve, an earlier build (the binaries in TINYSERVE_BASELINE)",
                    "predict": [swap.get(a, a) for a in TINYSERVE_SERVE],
                    "app": [swap.get(a, a) for a in BENCH_SERVER], "health": "/healthz"})
for server in SERVERS:
    server.setdefault("app", server["predict"])  # the Python apps serve every route

# ---------------------------------------------------------------------------------------------
# Scenarios.
# ---------------------------------------------------------------------------------------------
IRIS_ROW = [[5.1, 3.5, 1.4, 0.2]]
MLP_ROW = [[round(((i * 37) % 101) / 50.0 - 1.0, 3) for i in range(256)]]  # fixed, in [-1, 1]

SCENARIOS = [
    {"name": "iris", "title": "Small classifier (iris.onnx), 1 row per request",
     "tool": "wrk", "command": "predict", "path": "/models/iris/predict",
     "body": {"inputs": {"input": IRIS_ROW}}, "model": "iris", "models": "iris"},
    {"name": "mlp", "title": "Compute-bound MLP (mlp.onnx, 256 -> 4 x 1280 -> 16), 1 row per request",
     "tool": "wrk", "command": "predict", "path": "/models/mlp/predict",
     "body": {"inputs": {"input": MLP_ROW}}, "model": "mlp", "models": "mlp"},
    {"name": "fanout", "title": "Fan-out: 3 parallel GETs to a 50 ms upstream",
     "tool": "wrk", "command": "app", "path": "/fanout", "ideal_latency_s": 0.050,
     "models": "iris", "idle_seconds": 10},
    # The same handler and upstream, with nginx terminating TLS in front of the upstream. The
    # earlier builds a TINYSERVE_BASELINE holds may not call https:// at all.
    {"name": "fanout-tls", "title": "Fan-out over HTTPS: 3 parallel GETs through nginx (TLS) "
                                    "to a 50 ms upstream",
     "tool": "wrk", "command": "app", "path": "/fanout", "ideal_latency_s": 0.050,
     "models": "iris", "tls": True, "not_for": ["tinyserve-baseline"], "optional": True},
    {"name": "sse", "title": "Streaming: 20 Server-Sent Events, 10 ms apart",
     "tool": "sse", "command": "app", "path": "/sse", "ideal_latency_s": 0.190,
     "models": "iris"},
]

FULL = {"seconds": 8.0, "concurrency": {"iris": [1, 16, 64, 256], "mlp": [1, 16, 64, 256],
                                        "fanout": [1, 16, 64, 256], "sse": [1, 16, 64, 256],
                                        "fanout-tls": [1, 16, 64, 256]}}
QUICK = {"seconds": 3.0, "concurrency": {"iris": [1, 64], "mlp": [64], "fanout": [256],
                                         "sse": [64], "fanout-tls": [64, 256]}}
WARMUP_SECONDS, WARMUP_CONCURRENCY, SETTLE_SECONDS = 1.0, 16, 0.5
UPSTREAM_DELAY_MS = 50


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_busy(seconds=0.5):
    """Fraction of all cores busy over the next `seconds` (from /proc/stat)."""
    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(limit_s, threshold=0.25):
    """Waits (at most `limit_s`) until other work leaves the cores mostly idle; returns the
    last busy fraction seen."""
    end = time.time() + limit_s
    busy = cpu_busy()
    while busy > threshold and time.time() < end:
        busy = cpu_busy(2.0)
    return round(busy, 2)


class Process:
    """A server in its own process group (so all its workers can be found and stopped)."""

    def __init__(self, name, argv, env=None, logs=None):
        self.name = name
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{name}.log"
        self.log_file = open(self.log_path, "wb")
        # A value of None removes the variable.
        env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env,
                                     stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_http(self, url, timeout=90.0):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout} s; see {self.log_path}")

    def wait_line(self, prefix, timeout=10.0):
        """The rest of the first line of the server's output that starts with `prefix`."""
        end = time.time() + timeout
        while time.time() < end:
            for line in self.log_path.read_text().splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} printed no {prefix!r}; see {self.log_path}")

    def pids(self):
        """Every live process of the group: the server and its workers."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # field 5 of stat: process group id
                found.append(int(stat.parent.name))
        return found

    def cpu_seconds(self):
        """CPU time (user + system) used so far by every live process of the group, threads
        that have ended included."""
        ticks = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat
        return ticks / CLOCK_TICKS

    def memory(self):
        """Peak (VmHWM) and current (VmRSS) resident memory summed over the group, in MB."""
        peak = rss = 0
        pids = self.pids()
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        return {"peak_rss_mb": round(peak / 1024, 1), "rss_mb": round(rss / 1024, 1),
                "processes": len(pids)}

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.log_file.close()


def fill(argv, **values):
    return [part.format(**values) for part in argv]


def run_wrk(url, concurrency, seconds, body_file=None):
    argv = ["wrk", f"-t{min(CORES, concurrency)}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(BENCH / "wrk.lua"), url]
    if body_file:
        argv += ["--", str(body_file)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((l for l in out.splitlines() if l.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    raw = json.loads(line[5:])
    duration = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    ok = raw["requests"] - raw["errors"]["status"]
    return {"rps": ok / duration, "requests": raw["requests"], "errors": errors,
            "error_detail": {k: v for k, v in raw["errors"].items() if v},
            "latency_us": raw["latency_us"], "seconds": duration}


def run_sse(url, concurrency, seconds):
    argv = [str(BENCH_BIN), "sse-load", url, "--connections", str(concurrency),
            "--seconds", str(seconds)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"sse-load failed: {out.stderr}")
    raw = json.loads(out.stdout)
    return {"rps": raw["rps"], "requests": raw["requests"], "errors": raw["errors"],
            "error_detail": raw["error_examples"], "latency_us": raw["latency_us"],
            "ttfb_us": raw["ttfb_us"], "seconds": raw["seconds"]}


def measure(scenario, url, concurrency, seconds, body_file):
    if scenario["tool"] == "sse":
        return run_sse(url, concurrency, seconds)
    return run_wrk(url, concurrency, seconds, body_file)


def serve_help():
    try:
        return subprocess.run([str(TINYSERVE), "serve", "--help"], capture_output=True,
                              text=True, timeout=30).stdout
    except OSError:
        return ""


def trust_check(server, argv, models, front, logs):
    """Starts `server` trusting only a CA that signed nothing here (SSL_CERT_FILE): its
    /fanout must fail (502), or it is not verifying the upstream's certificate. Returns the
    status it answered."""
    port = free_port()
    proc = Process(f"fanout-tls-trust-{server['name']}",
                   fill(argv, port=port, models=models, upstream=front.url),
                   env={"BENCH_UPSTREAM": front.url, "BENCH_MODELS": str(models),
                        "SSL_CERT_FILE": str(front.other_ca), "SSL_CERT_DIR": None},
                   logs=logs)
    try:
        base = f"http://127.0.0.1:{port}"
        proc.wait_http(base + server["health"])
        try:
            with urllib.request.urlopen(base + "/fanout", timeout=10) as reply:
                status = reply.status
        except urllib.error.HTTPError as err:
            status = err.code
    finally:
        proc.stop()
    if status == 200:
        raise RuntimeError(f"{server['name']} called the upstream although it trusts only "
                           "another CA: it does not verify certificates")
    return status


def tinyserve_handshakes(base):
    """Upstream::tls_handshakes() of tinyserve-bench's mock upstream (None: not served)."""
    try:
        with urllib.request.urlopen(base + "/bench/upstream", timeout=5) as reply:
            return json.loads(reply.read())["tls_handshakes"]
    except (OSError, ValueError, KeyError):
        return None


def floors(seconds):
    """In-process inference time: Python onnxruntime, and tinyserve's Model::infer."""
    python = {"models": {}}
    for folder in sorted(p for p in MODELS.iterdir() if p.is_dir()):
        found = json.loads(subprocess.run(
            [str(PYTHON / "python"), str(BENCH / "floor.py"), str(folder), str(seconds)],
            capture_output=True, text=True, check=True).stdout)
        python["models"].update(found.pop("models"))
        python.update(found)
    rust = {}
    # The first way is `tinyserve serve`'s default; its single-call time is the one reported.
    ways = {f"1 session x {CORES} intra-op threads": ["--threads", "1", "--sessions", "1",
                                                      "--intra", str(CORES)],
            f"{CORES} sessions x 1 thread": ["--threads", str(CORES), "--sessions", str(CORES)]}
    for model in sorted(MODELS.glob("*/*.onnx")):
        found = {}
        for way, flags in ways.items():
            out = subprocess.run([str(BENCH_BIN), "floor", str(model), "--seconds", str(seconds)]
                                 + flags, capture_output=True, text=True)
            found[way] = json.loads(out.stdout) if out.returncode == 0 else {
                "error": out.stderr.strip()}
        first = found[next(iter(ways))]
        rates = {way: r["throughput_rps"] for way, r in found.items() if "throughput_rps" in r}
        rust[model.stem] = {"per_call_us": first.get("per_call_us"),
                            "throughput_rps": max(rates.values(), default=None),
                            "throughput_ways": rates}
    return {"python": python, "tinyserve": rust}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in
                Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    mem_kb = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal")))
    return {"cpu": cpu, "cores": CORES, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def versions():
    pip = subprocess.run([str(PYTHON / "python"), "-m", "pip", "freeze"], capture_output=True,
                         text=True).stdout.splitlines()
    wanted = {"flask", "gunicorn", "fastapi", "uvicorn", "uvloop", "httptools", "aiohttp",
              "urllib3", "onnxruntime", "numpy", "pydantic", "starlette"}
    found = {l.split("==")[0].lower(): l.split("==")[1] for l in pip if "==" in l}
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk = (wrk.stdout + wrk.stderr).split("\n")[0].split(" Copyright")[0].removeprefix("wrk ")
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {**{k: v for k, v in sorted(found.items()) if k in wanted},
            "wrk": wrk.strip(), "rustc": rustc.removeprefix("rustc ")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 2-3 minute subset")
    parser.add_argument("--only", help="comma-separated scenarios")
    parser.add_argument("--servers", help="comma-separated server names")
    parser.add_argument("--seconds", type=float, help="seconds per point")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                        help="before each server, wait up to S seconds for the cores to be "
                             "mostly idle (other work on a shared machine skews every number)")
    parser.add_argument("--out", help="output folder (default bench/results, or "
                                      "bench/results/quick with --quick)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    seconds = args.seconds or plan["seconds"]
    out = Path(args.out) if args.out else BENCH / "results" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    logs = BENCH / "results" / "tmp" / "logs"
    only = set(args.only.split(",")) if args.only else None
    chosen = set(args.servers.split(",")) if args.servers else None
    started = time.time()
    help_text = serve_help()

    results = {"meta": {"mode": "quick" if args.quick else "full", "seconds_per_point": seconds,
                        "warmup_seconds": WARMUP_SECONDS, "upstream_delay_ms": UPSTREAM_DELAY_MS,
                        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "machine": machine(), "versions": versions(),
                        "load_at_start": loadavg(), "load_generators": {
                            "wrk": "wrk -t<min(2,c)> -c<c> -d<s> --timeout 10s (closed loop)",
                            "sse": "tinyserve-bench sse-load (one thread per connection)"}},
               "servers": {}, "skipped": {}, "scenarios": []}
    for server in SERVERS:
        missing = [flag for flag in server.get("requires", []) if flag not in help_text]
        if missing:
            results["skipped"][server["name"]] = (
                f"`tinyserve serve --help` does not list {', '.join(missing)} yet")
        results["servers"][server["name"]] = {"family": server["family"],
                                              "settings": server["settings"]}
    if results["meta"]["load_at_start"] > 1.5:
        log(f"warning: load average {results['meta']['load_at_start']} before the run: "
            "other work on this machine will lower every number")

    selected = [s for s in SCENARIOS if (s["name"] in only if only else not s.get("optional"))]
    if any(s["command"] == "predict" for s in selected):
        log("floor: in-process onnxruntime and tinyserve Model::infer")
        results["floor"] = floors(2.0 if not args.quick else 1.0)
    else:
        results["floor"] = {}

    upstream = Process("upstream", [str(BENCH_BIN), "upstream", "--port", str(free_port()),
                                    "--delay-ms", str(UPSTREAM_DELAY_MS)], logs=logs)
    upstream_url = upstream.wait_line("listening on ")
    # A bare HTTP round trip at c=1: wrk against the mock upstream with no delay (thread per
    # connection, no framework, no handoff). Part of every server's c=1 latency.
    echo = Process("echo", [str(BENCH_BIN), "upstream", "--port", str(free_port()),
                            "--delay-ms", "0"], logs=logs)
    try:
        trip = run_wrk(echo.wait_line("listening on ") + "/item/0", 1, seconds)
        results["floor"]["http_round_trip"] = {"p50_us": trip["latency_us"]["p50"],
                                               "p99_us": trip["latency_us"]["p99"],
                                               "rps": trip["rps"]}
    finally:
        echo.stop()
    env = {"BENCH_UPSTREAM": upstream_url}
    body_dir = BENCH / "results" / "tmp"
    front = None
    try:
        if any(s.get("tls") for s in selected):
            front = TlsFront(BENCH / "results" / "tmp" / "tls", upstream_url, free_port(),
                             lambda name, argv: Process(name, argv, logs=logs))
            log(f"nginx terminating TLS at {front.url} in front of {upstream_url}")
            results["meta"]["tls_front"] = {
                "nginx": subprocess.run(["nginx", "-v"], capture_output=True,
                                        text=True).stderr.strip(),
                "openssl": subprocess.run(["openssl", "version"], capture_output=True,
                                          text=True).stdout.strip(),
                "settings": "2 worker processes, 8,192 connections each, keep-alive to "
                            "clients and to the mock upstream (1,024 idle per worker), no "
                            "request limit; ECDSA P-256 certificate for 127.0.0.1 from a CA "
                            "made by openssl at bench time; TLS 1.2/1.3, nginx's defaults"}
        for scenario in selected:
            levels = plan["concurrency"][scenario["name"]]
            entry = {key: scenario[key] for key in ("name", "title", "path")}
            entry.update(concurrency=levels, points=[], memory={}, models=scenario["models"],
                         ideal_latency_s=scenario.get("ideal_latency_s"), model=scenario.get("model"))
            body_file = None
            if "body" in scenario:
                body_file = body_dir / f"{scenario['name']}.json"
                body_file.write_text(json.dumps(scenario["body"]))
            for server in SERVERS:
                argv = server[scenario["command"]]
                if (argv is None or server["name"] in results["skipped"]
                        or server["name"] in scenario.get("not_for", [])
                        or (chosen and server["name"] not in chosen)):
                    continue
                quiet = wait_quiet(args.wait_quiet) if args.wait_quiet else None
                port = free_port()
                models = MODELS / scenario["models"]
                target, server_env = upstream_url, {**env, "BENCH_MODELS": str(models)}
                if scenario.get("tls"):
                    try:
                        status = trust_check(server, argv, models, front, logs)
                    except Exception as err:
                        log(f"{scenario['name']} {server['name']}: {err}")
                        entry.setdefault("failures", {})[server["name"]] = str(err)
                        continue
                    entry.setdefault("trust_check", {})[server["name"]] = status
                    log(f"{scenario['name']:7} {server['name']:16} trusting another CA only: "
                        f"/fanout answered {status}")
                    target = front.url
                    # Trust the bench's CA only (this machine's environment may name the system's).
                    server_env.update(BENCH_UPSTREAM=front.url, SSL_CERT_FILE=str(front.ca),
                                      SSL_CERT_DIR=None)
                proc = Process(f"{scenario['name']}-{server['name']}",
                               fill(argv, port=port, models=models, upstream=target),
                               env=server_env, logs=logs)
                base = f"http://127.0.0.1:{port}"
                try:
                    since_start = front.offset() if scenario.get("tls") else None
                    proc.wait_http(base + server["health"])
                    at_start = proc.memory()["rss_mb"]
                    url = base + scenario["path"]
                    measure(scenario, url, WARMUP_CONCURRENCY, WARMUP_SECONDS, body_file)
                    time.sleep(SETTLE_SECONDS)
                    for c in levels:
                        load = loadavg()
                        since = front.offset() if scenario.get("tls") else None
                        cpu = proc.cpu_seconds()
                        point = measure(scenario, url, c, seconds, body_file)
                        cpu = proc.cpu_seconds() - cpu
                        if since is not None:
                            point["upstream"] = front.counts(since)
                        point.update(server=server["name"], concurrency=c, load_before=load,
                                     server_cpu_s=round(cpu, 3),
                                     cpu_us_per_request=(round(cpu * 1e6 / point["requests"], 1)
                                                         if point["requests"] else None))
                        if quiet is not None and c == levels[0]:
                            point["cpu_busy_before_start"] = quiet
                        entry["points"].append(point)
                        lat = point["latency_us"]
                        extra = (f" ttfb p50 {point['ttfb_us']['p50'] or 0:.0f} us"
                                 if "ttfb_us" in point else "")
                        if "upstream" in point:
                            extra += (f" calls {point['upstream']['calls']} handshakes "
                                      f"{point['upstream']['tls_handshakes']}")
                        log(f"{scenario['name']:7} {server['name']:16} c={c:<4} "
                            f"{point['rps']:9.1f} req/s  p50 {lat['p50'] or 0:9.0f} us  "
                            f"p99 {lat['p99'] or 0:9.0f} us  errors {point['errors']}  "
                            f"cpu {point['cpu_us_per_request'] or 0:.0f} us/req{extra}")
                        time.sleep(SETTLE_SECONDS)
                    if scenario.get("idle_seconds"):
                        # What the server costs once the load is over (threads parked, timers).
                        time.sleep(1.0)
                        cpu = proc.cpu_seconds()
                        time.sleep(scenario["idle_seconds"])
                        cpu = proc.cpu_seconds() - cpu
                        entry.setdefault("idle", {})[server["name"]] = {
                            "seconds": scenario["idle_seconds"], "cpu_s": round(cpu, 3),
                            "core_percent": round(100 * cpu / scenario["idle_seconds"], 2)}
                        log(f"{scenario['name']:7} {server['name']:16} idle "
                            f"{scenario['idle_seconds']} s after the load: {cpu:.3f} s of CPU")
                    entry["memory"][server["name"]] = {**proc.memory(),
                                                       "at_start_rss_mb": at_start}
                    if since_start is not None:
                        # The whole run of this server, warm-up included.
                        total = front.counts(since_start)
                        total["counted_by_server"] = (tinyserve_handshakes(base)
                                                      if server["family"] == "tinyserve" else None)
                        entry.setdefault("tls", {})[server["name"]] = total
                        log(f"{scenario['name']:7} {server['name']:16} {total['calls']} calls, "
                            f"{total['tls_handshakes']} TLS handshakes "
                            f"({total['tls_resumed']} resumed); the server counted "
                            f"{total['counted_by_server']}")
                except Exception as err:  # record and go on: one broken server must not stop the rest
                    log(f"{scenario['name']} {server['name']}: {err}")
                    entry.setdefault("failures", {})[server["name"]] = str(err)
                finally:
                    proc.stop()
            results["scenarios"].append(entry)
    finally:
        if front:
            front.stop()
        upstream.stop()
    results["meta"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["meta"]["total_seconds"] = round(time.time() - started, 1)
    results["meta"]["load_at_end"] = loadavg()
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {path} ({results['meta']['total_seconds']} s)")
    subprocess.run([sys.executable, str(BENCH / "report.py"), str(path)], check=True)


if __name__ == "__main__":
    if not shutil.which("wrk"):
        sys.exit("wrk not found: run bench/run, which installs it")
    main()
