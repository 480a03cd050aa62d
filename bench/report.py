#!/usr/bin/env python3
"""Turns a results.json written by bench/harness.py into, in the same folder:

- results.json again, with `ratios` (tinyserve ÷ each baseline, per scenario and
  concurrency) and `targets` (each target of the performance issue: measured, holds or not);
- results.md: the tables (every point, ratios, floor, memory, targets);
- summary.md: the compact tables the main README's Benchmarks section shows;
- one PNG per scenario: requests/s and p99 latency (time to first event for streams) against
  concurrency, one line per server.

Runs by itself too: bench/.venv/bin/python bench/report.py bench/results/results.json
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BASELINE_FAMILIES = ("flask", "fastapi")
COLORS = {"tinyserve": "#c0392b", "tinyserve-batch": "#e67e22", "flask-sync": "#1e8449",
          "flask-gthread": "#82e0aa", "fastapi-1w": "#1f618d", "fastapi-2w": "#85c1e9",
          "tinyserve-baseline": "#7f8c8d"}


def points(scenario, server=None, c=None):
    return [p for p in scenario["points"]
            if (server is None or p["server"] == server) and (c is None or p["concurrency"] == c)]


def point(scenario, server, c):
    found = points(scenario, server, c)
    return found[0] if found else None


def servers_in(scenario):
    seen = []
    for p in scenario["points"]:
        if p["server"] not in seen:
            seen.append(p["server"])
    return seen


def family(results, server):
    return results["servers"][server]["family"]


def best(results, scenario, c, fam, key="rps", lowest=False):
    """(server, point) of family `fam` with the highest rps (or the lowest `key` value)."""
    found = [(p["server"], p) for p in points(scenario, c=c) if family(results, p["server"]) == fam]
    found = [(s, p) for s, p in found if value(p, key) is not None]
    if not found:
        return None, None
    pick = min if lowest else max
    return pick(found, key=lambda sp: value(sp[1], key))


def value(p, key):
    """`rps`, or a latency such as `latency_us.p99` / `ttfb_us.p50`."""
    if p is None:
        return None
    node = p
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def scenario_named(results, name):
    return next((s for s in results["scenarios"] if s["name"] == name), None)


def fmt_rps(x):
    return "—" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ms(us):
    if us is None:
        return "—"
    ms = us / 1000
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.1f}×" if x >= 1.95 else f"{x:.2f}×"


def ratios(results):
    """Per scenario and concurrency: each tinyserve config's rps and p99 against each baseline."""
    out = {}
    for sc in results["scenarios"]:
        rows = []
        for c in sc["concurrency"]:
            for ours in servers_in(sc):
                if family(results, ours) != "tinyserve":
                    continue
                mine = point(sc, ours, c)
                for theirs in servers_in(sc):
                    other = point(sc, theirs, c)
                    if family(results, theirs) == "tinyserve" or not mine or not other:
                        continue
                    rows.append({
                        "concurrency": c, "tinyserve": ours, "baseline": theirs,
                        "rps_ratio": mine["rps"] / other["rps"] if other["rps"] else None,
                        "p99_ratio": (mine["latency_us"]["p99"] / other["latency_us"]["p99"]
                                      if other["latency_us"]["p99"] and mine["latency_us"]["p99"]
                                      else None)})
        out[sc["name"]] = rows
    return out


def target(name, holds, measured, goal):
    return {"target": name, "holds": holds, "measured": measured, "goal": goal}


def targets(results):
    """Each target of the performance issue, evaluated on this run."""
    found = []
    floor_py = results.get("floor", {}).get("python", {}).get("models", {})

    iris = scenario_named(results, "iris")
    if iris and point(iris, "tinyserve", 64):
        ts = point(iris, "tinyserve", 64)
        for fam in BASELINE_FAMILIES:
            name, top = best(results, iris, 64, fam)
            _, low = best(results, iris, 64, fam, "latency_us.p99", lowest=True)
            if not top:
                continue
            rps_x = ts["rps"] / top["rps"]
            p99_x = ts["latency_us"]["p99"] / low["latency_us"]["p99"]
            found.append(target(
                f"iris, c=64: tinyserve vs best {fam}",
                rps_x >= 10 and p99_x <= 0.1,
                f"{fmt_rps(ts['rps'])} vs {fmt_rps(top['rps'])} req/s ({name}): {fmt_ratio(rps_x)}; "
                f"p99 {fmt_ms(ts['latency_us']['p99'])} vs {fmt_ms(low['latency_us']['p99'])} ms: "
                f"{p99_x:.2f}×",
                "≥ 10× requests/s and p99 ≤ 1/10"))
    if iris and point(iris, "tinyserve", 1) and "iris" in floor_py:
        p50 = point(iris, "tinyserve", 1)["latency_us"]["p50"]
        floor = floor_py["iris"]["per_call_us"]
        trip = results["floor"].get("http_round_trip", {}).get("p50_us")
        note = (f"; a bare HTTP round trip through wrk and loopback (no framework) is {trip:.0f} "
                f"µs of it" if trip else "")
        found.append(target(
            "server overhead: iris p50 at c=1 minus the floor",
            p50 - floor <= 100,
            f"{p50:.0f} µs − {floor:.0f} µs = {p50 - floor:.0f} µs{note}", "≤ 100 µs"))

    mlp = scenario_named(results, "mlp")
    if mlp:
        base_name, base = max(((p["server"], p) for p in points(mlp, c=64)
                               if family(results, p["server"]) in BASELINE_FAMILIES),
                              key=lambda sp: sp[1]["rps"], default=(None, None))
        batch = point(mlp, "tinyserve-batch", 64)
        if batch and base:
            x = batch["rps"] / base["rps"]
            found.append(target("MLP, c=64, with batching vs best Python baseline", x >= 3,
                                f"{fmt_rps(batch['rps'])} vs {fmt_rps(base['rps'])} req/s "
                                f"({base_name}): {fmt_ratio(x)}", "≥ 3×"))
        else:
            why = results.get("skipped", {}).get("tinyserve-batch", "not measured")
            found.append(target("MLP, c=64, with batching vs best Python baseline", None,
                                f"not run: {why}", "≥ 3×"))
        plain = point(mlp, "tinyserve", 64)
        if plain and "mlp" in floor_py:
            floor = floor_py["mlp"]["throughput_rps"]
            x = plain["rps"] / floor
            found.append(target("MLP, c=64, without batching vs the floor's throughput",
                                x >= 0.9, f"{fmt_rps(plain['rps'])} vs {fmt_rps(floor)} req/s "
                                f"(in-process floor, {floor_py['mlp'].get('throughput_config')}): "
                                f"{x:.0%}", "≥ 90%"))

    fan = scenario_named(results, "fanout")
    if fan and point(fan, "tinyserve", 256):
        ts = point(fan, "tinyserve", 256)
        others = [p for p in points(fan, c=256) if family(results, p["server"]) != "tinyserve"]
        top = max(others, key=lambda p: p["rps"], default=None)
        ideal = 256 / 0.050
        holds = ts["rps"] >= 0.8 * ideal and (top is None or ts["rps"] > top["rps"])
        found.append(target(
            "fan-out (3 × 50 ms), c=256", holds,
            f"{fmt_rps(ts['rps'])} req/s = {ts['rps'] / ideal:.0%} of {ideal:,.0f}; best "
            f"baseline {fmt_rps(top['rps']) if top else '—'} ({top['server'] if top else '—'})",
            "≥ 80% of 5,120 req/s and more than every baseline"))
        found += fanout_targets(fan)

    tls = scenario_named(results, "fanout-tls")
    if tls and point(tls, "tinyserve", 256):
        found += fanout_targets(tls, "fan-out over HTTPS")
        found += handshake_targets(tls)

    sse = scenario_named(results, "sse")
    if sse and point(sse, "tinyserve", 64):
        ts = point(sse, "tinyserve", 64)
        ideal = 64 / sse["ideal_latency_s"]
        others = [p for p in points(sse, c=64) if family(results, p["server"]) != "tinyserve"
                  and value(p, "ttfb_us.p50") is not None]
        low = min(others, key=lambda p: p["ttfb_us"]["p50"], default=None)
        ttfb = ts["ttfb_us"]["p50"]
        holds = ts["rps"] >= 0.95 * ideal and (low is None or ttfb <= low["ttfb_us"]["p50"])
        found.append(target(
            "streaming, c=64", holds,
            f"{fmt_rps(ts['rps'])} streams/s = {ts['rps'] / ideal:.1%} of ideal {ideal:.0f}; "
            f"TTFB p50 {fmt_ms(ttfb)} ms vs best baseline "
            f"{fmt_ms(low['ttfb_us']['p50']) if low else '—'} ms ({low['server'] if low else '—'})",
            "throughput within 5% of ideal and TTFB ≤ best baseline"))

    for sc in results["scenarios"]:
        mem = sc.get("memory", {})
        ours = mem.get("tinyserve")
        theirs = {s: m for s, m in mem.items() if family(results, s) != "tinyserve"}
        if not ours or not theirs:
            continue
        small_name = min(theirs, key=lambda s: theirs[s]["peak_rss_mb"])
        small = theirs[small_name]["peak_rss_mb"]
        x = ours["peak_rss_mb"] / small
        # The memory target is the small classifier's; the other scenarios are shown
        # for information, with no verdict.
        is_target = sc["name"] == "iris"
        found.append(target(
            f"memory ({sc['name']}): tinyserve peak RSS vs the smallest baseline",
            x <= 1 / 3 if is_target else "info",
            f"{ours['peak_rss_mb']:.0f} MB vs {small:.0f} MB ({small_name}): {x:.2f}×",
            "≤ 1/3" if is_target else "— (not a target)"))
    return found


def fanout_targets(fan, label="fan-out"):
    """The fan-out issue's acceptance: against FastAPI + aiohttp with 2 workers, the ideal at
    c=16 and c=64, CPU per request, and the idle server."""
    found = []
    ts, py = point(fan, "tinyserve", 256), point(fan, "fastapi-2w", 256)
    if py:
        x = ts["rps"] / py["rps"] if py["rps"] else float("inf")
        found.append(target(
            f"{label}, c=256: tinyserve vs FastAPI + aiohttp (2 workers), zero errors",
            x >= 1.5 and ts["errors"] == 0,
            f"{fmt_rps(ts['rps'])} vs {fmt_rps(py['rps'])} req/s: {fmt_ratio(x)}; "
            f"{ts['errors']} errors", "≥ 1.5× and no error"))
    for c in (16, 64):
        p = point(fan, "tinyserve", c)
        if p:
            ideal = c / fan["ideal_latency_s"] * 0.9
            found.append(target(
                f"{label}, c={c}: 90% of the ideal", p["rps"] >= ideal and p["errors"] == 0,
                f"{fmt_rps(p['rps'])} req/s = {p['rps'] / (ideal / 0.9):.0%} of "
                f"{ideal / 0.9:,.0f}; {p['errors']} errors", f"≥ {ideal:,.0f} req/s"))
    cpu = ts.get("cpu_us_per_request")
    if cpu is not None and label == "fan-out":
        theirs = py.get("cpu_us_per_request") if py else None
        found.append(target(
            "fan-out, c=256: server CPU per request", cpu <= 150,
            f"{cpu:.0f} µs" + (f" (fastapi-2w: {theirs:.0f} µs)" if theirs else ""), "≤ 150 µs"))
    idle = fan.get("idle", {}).get("tinyserve")
    if idle:
        found.append(target(
            f"fan-out: idle server for {idle['seconds']} s after the load",
            idle["core_percent"] < 1,
            f"{idle['core_percent']:.2f}% of a core ({idle['cpu_s'] * 1000:.0f} ms of CPU)",
            "< 1% of a core"))
    return found


def handshake_targets(sc):
    """One TLS handshake per kept-alive connection, not per call: over tinyserve's whole run,
    tinyserve's own count (`Upstream::tls_handshakes`) equals the connections nginx saw, and a
    connection carries many calls. A connection is only ever opened for more concurrency or
    to replace one closed mid-answer (a call past its deadline), so with no error the
    handshakes stay within 3 calls x the highest concurrency."""
    tls = sc.get("tls", {}).get("tinyserve")
    if not tls:
        return []
    own = tls.get("counted_by_server")
    per = tls["calls"] / max(1, tls["tls_handshakes"])
    errors = sum(p["errors"] for p in points(sc, "tinyserve"))
    holds = (own is None or own == tls["tls_handshakes"]) and per >= 10
    if errors == 0:
        holds = holds and tls["tls_handshakes"] <= 3 * max(sc["concurrency"])
    return [target(
        "fan-out over HTTPS: one TLS handshake per kept-alive connection, not per call", holds,
        f"{tls['tls_handshakes']:,} handshakes ({tls['tls_resumed']:,} resumed) for "
        f"{tls['calls']:,} calls, {per:,.0f} calls per connection (nginx's log); tinyserve "
        f"counted {own if own is not None else '—'}",
        "handshakes = connections, many calls each; no more than "
        f"{3 * max(sc['concurrency'])} (3 × the highest concurrency) without errors")]


def tls_table(sc):
    """Calls and TLS handshakes per point, from nginx's access log."""
    if not sc.get("tls"):
        return []
    lines = ["", "Upstream calls and TLS handshakes (nginx's access log: a handshake is a "
             "connection's first request; resumed: `$ssl_session_reused`):", "",
             "| server | c | upstream calls | TLS handshakes | resumed | calls per handshake |",
             "|---|---|---:|---:|---:|---:|"]
    for server in servers_in(sc):
        for p in points(sc, server):
            up = p.get("upstream")
            if not up:
                continue
            per = f"{up['calls'] / up['tls_handshakes']:,.0f}" if up["tls_handshakes"] else "—"
            lines.append(f"| {server} | {p['concurrency']} | {up['calls']:,} | "
                         f"{up['tls_handshakes']:,} | {up['tls_resumed']:,} | {per} |")
        total = sc["tls"].get(server)
        if total:
            own = total.get("counted_by_server")
            lines.append(f"| {server} | whole run (warm-up included) | {total['calls']:,} | "
                         f"{total['tls_handshakes']:,}" + (f" (the server: {own:,})" if own is
                                                            not None else "") +
                         f" | {total['tls_resumed']:,} | "
                         f"{total['calls'] / max(1, total['tls_handshakes']):,.0f} |")
    checks = sc.get("trust_check", {})
    if checks:
        lines += ["", "Trust check: each server started trusting only another CA answered "
                  "/fanout with " + ", ".join(f"{s} {c}" for s, c in checks.items()) +
                  " (so each verifies the upstream's certificate)."]
    return lines


def before_after(sc):
    """tinyserve against tinyserve-baseline (an earlier build), when both ran."""
    ours, before = points(sc, "tinyserve"), points(sc, "tinyserve-baseline")
    if not ours or not before:
        return []
    lines = ["", "After (tinyserve) against before (tinyserve-baseline):", "",
             "| c | after req/s (CPU µs/req) | before req/s (CPU µs/req) | after / before |",
             "|---|---:|---:|---:|"]
    for p in ours:
        b = point(sc, "tinyserve-baseline", p["concurrency"])
        if b:
            lines.append(f"| {p['concurrency']} | {fmt_rps(p['rps'])} "
                         f"({p['cpu_us_per_request'] or 0:,.0f}) | {fmt_rps(b['rps'])} "
                         f"({b['cpu_us_per_request'] or 0:,.0f}) | "
                         f"{p['rps'] / b['rps']:.2f}× |")
    return lines


def markdown(results):
    meta = results["meta"]
    m = meta["machine"]
    lines = [
        f"# Benchmark results ({meta['mode']} run)", "",
        f"Run {meta['started']} → {meta['finished']} ({meta['total_seconds'] / 60:.1f} min) on "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}; load average "
        f"{meta['load_at_start']} at the start, {meta['load_at_end']} at the end. "
        f"{meta['seconds_per_point']:g} s per point after a {meta['warmup_seconds']:g} s warm-up; "
        "the load generator runs on the same 2 cores as the server.", "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
        "## Servers", "", "| server | settings |", "|---|---|"]
    for name, server in results["servers"].items():
        note = f" — **skipped**: {results['skipped'][name]}" if name in results["skipped"] else ""
        lines.append(f"| {name} | {server['settings']}{note} |")

    lines += ["", "## Targets", "", "| target | goal | measured | holds |", "|---|---|---|---|"]
    for t in results["targets"]:
        mark = {True: "yes", False: "**no**", None: "not run", "info": "—"}[t["holds"]]
        lines.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {mark} |")

    floor = results.get("floor", {})
    trip = floor.get("http_round_trip")
    trip_text = (f" A bare HTTP round trip at c=1 (wrk against a thread-per-connection socket "
                 f"answerer, no framework): p50 {trip['p50_us']} µs, p99 {trip['p99_us']} µs."
                 if trip else "")
    lines += ["", "## Floor: in-process inference, no HTTP", "",
              "onnxruntime from Python (bench/floor.py) and tinyserve's own `Model::infer` "
              "(tinyserve-bench floor); one row per call. Throughput: the best way of using both "
              "cores (every way measured is in results.json)." + trip_text, "",
              "| model | Python, 1 call | Python, per row in a batch of 32 | Python, calls/s "
              "(best way) | tinyserve, 1 call | tinyserve, calls/s (best way) |",
              "|---|---|---|---|---|---|"]
    for name, py in floor.get("python", {}).get("models", {}).items():
        rs = floor.get("tinyserve", {}).get(name, {})
        rs_ways = rs.get("throughput_ways", {})
        rs_top = max(rs_ways, key=rs_ways.get) if rs_ways else "—"
        lines.append(f"| {name} | {py['per_call_us']:.1f} µs | {py['batch32_per_row_us']:.1f} µs | "
                     f"{fmt_rps(py['throughput_rps'])} ({py.get('throughput_config', '')}) | "
                     f"{(rs.get('per_call_us') or float('nan')):.1f} µs | "
                     f"{fmt_rps(rs.get('throughput_rps'))} ({rs_top}) |")

    for sc in results["scenarios"]:
        is_sse = any("ttfb_us" in p for p in sc["points"])
        lines += ["", f"## {sc['title']}", "", f"`{sc['path']}`. ![{sc['name']}]({sc['name']}.png)",
                  ""]
        head = "| server | c | req/s | p50 ms | p99 ms |"
        if is_sse:
            head = "| server | c | streams/s | p50 ms | p99 ms | TTFB p50 ms | TTFB p99 ms |"
        lines += [head + " errors | server CPU µs/req | peak RSS MB (after start) |",
                  "|---" * (head.count("|") - 1 + 3) + "|"]
        for server in servers_in(sc):
            mem = sc["memory"].get(server, {}).get("peak_rss_mb")
            start = sc["memory"].get(server, {}).get("at_start_rss_mb")
            if mem is not None and start is not None:
                mem = f"{mem} ({start})"
            for p in points(sc, server):
                row = (f"| {server} | {p['concurrency']} | {fmt_rps(p['rps'])} | "
                       f"{fmt_ms(p['latency_us']['p50'])} | {fmt_ms(p['latency_us']['p99'])} |")
                if is_sse:
                    row += f" {fmt_ms(p['ttfb_us']['p50'])} | {fmt_ms(p['ttfb_us']['p99'])} |"
                cpu = p.get("cpu_us_per_request")
                row += (f" {p['errors']} | {f'{cpu:,.0f}' if cpu is not None else '—'} | "
                        f"{mem if mem is not None else '—'} |")
                lines.append(row)
        for name, why in sc.get("failures", {}).items():
            lines.append(f"\n{name} failed: {why}")
        for name, idle in sc.get("idle", {}).items():
            lines.append(f"\n{name}, idle for {idle['seconds']} s after the load: "
                         f"{idle['cpu_s'] * 1000:.0f} ms of CPU ({idle['core_percent']:.2f}% of a core)")
        lines += tls_table(sc) + before_after(sc)
        rows = results["ratios"].get(sc["name"], [])
        if rows:
            bases = list(dict.fromkeys(r["baseline"] for r in rows))
            lines += ["", "tinyserve ÷ baseline, requests/s (p99 ratio in brackets):", "",
                      "| tinyserve | c | " + " | ".join(bases) + " |",
                      "|---|---|" + "---|" * len(bases)]
            for key in dict.fromkeys((r["tinyserve"], r["concurrency"]) for r in rows):
                cells = []
                for b in bases:
                    r = next((r for r in rows if (r["tinyserve"], r["concurrency"]) == key
                              and r["baseline"] == b), None)
                    cells.append("—" if not r else
                                 f"{fmt_ratio(r['rps_ratio'])} ({fmt_ratio(r['p99_ratio'])})")
                lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(results, images="bench/results"):
    """The compact tables for the main README: requests/s by concurrency, p99 (or time to
    first event) at c=64, peak memory; then the targets. Image links relative to the repo."""
    lines = []
    for sc in results["scenarios"]:
        is_sse = any("ttfb_us" in p for p in sc["points"])
        cs = sc["concurrency"]
        unit = "streams/s" if is_sse else "requests/s"
        tail = "TTFB p50 at c=64" if is_sse else "p99 at c=64"
        lines += [f"**{sc['title']}** — {unit}:", "",
                  "| server | " + " | ".join(f"c={c}" for c in cs) + f" | {tail} | peak RSS |",
                  "|---|" + "---:|" * (len(cs) + 2)]
        for server in servers_in(sc):
            cells = [fmt_rps(value(point(sc, server, c), "rps")) for c in cs]
            at64 = point(sc, server, 64)
            key = "ttfb_us.p50" if is_sse else "latency_us.p99"
            lat = fmt_ms(value(at64, key)) + " ms" if at64 else "—"
            mem = sc["memory"].get(server, {}).get("peak_rss_mb")
            name = f"**{server}**" if family(results, server) == "tinyserve" else server
            lines.append(f"| {name} | " + " | ".join(cells) +
                         f" | {lat} | {f'{mem:.0f} MB' if mem is not None else '—'} |")
        if sc.get("idle"):
            lines += ["", "Server CPU per request (µs: user + system time of the server's "
                      "processes during the point ÷ requests), and CPU used in the 10 s after "
                      "the load:", "",
                      "| server | " + " | ".join(f"c={c}" for c in cs) + " | idle 10 s |",
                      "|---|" + "---:|" * (len(cs) + 1)]
            for server in servers_in(sc):
                cells = []
                for c in cs:
                    cpu = value(point(sc, server, c), "cpu_us_per_request")
                    cells.append("—" if cpu is None else f"{cpu:,.0f}")
                idle = sc["idle"].get(server)
                idle = f"{idle['core_percent']:.2f}% of a core" if idle else "—"
                name = f"**{server}**" if family(results, server) == "tinyserve" else server
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {idle} |")
        lines += ["", f"![{sc['title']}]({images}/{sc['name']}.png)", ""]
    lines += ["| target | goal | measured | holds |", "|---|---|---|---|"]
    for t in results["targets"]:
        mark = {True: "yes", False: "**no**", None: "not run", "info": "—"}[t["holds"]]
        lines.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {mark} |")
    return "\n".join(lines) + "\n"


def plot(results, sc, path):
    is_sse = any("ttfb_us" in p for p in sc["points"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    for server in servers_in(sc):
        ps = points(sc, server)
        xs = [p["concurrency"] for p in ps]
        style = dict(marker="o", color=COLORS.get(server), label=server,
                     linewidth=2.4 if family(results, server) == "tinyserve" else 1.4)
        left.plot(xs, [p["rps"] for p in ps], **style)
        key = "ttfb_us" if is_sse else "latency_us"
        right.plot(xs, [(p[key]["p50" if is_sse else "p99"] or float("nan")) / 1000 for p in ps],
                   **style)
    ideal = sc.get("ideal_latency_s")
    if ideal:
        cs = sc["concurrency"]
        left.plot(cs, [c / ideal for c in cs], "k--", linewidth=1, label=f"ideal (c / {ideal:g} s)")
    model = sc.get("model")
    floor = results.get("floor", {}).get("python", {}).get("models", {}).get(model or "")
    if floor:
        left.axhline(floor["throughput_rps"], color="gray", linestyle=":", linewidth=1,
                     label="in-process floor (no HTTP)")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sc["concurrency"], [str(c) for c in sc["concurrency"]])
        ax.set_xlabel("concurrent connections")
        ax.grid(True, alpha=0.3)
    left.set_yscale("log")
    left.set_ylabel("streams/s" if is_sse else "requests/s")
    right.set_yscale("log")
    right.set_ylabel("time to first event p50, ms" if is_sse else "p99 latency, ms")
    left.legend(fontsize=7, loc="best")
    fig.suptitle(sc["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    # A 64-colour palette keeps each committed PNG around 20 KB instead of 60.
    from PIL import Image
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main():
    path = Path(sys.argv[1])
    results = json.loads(path.read_text())
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    path.write_text(json.dumps(results, indent=1) + "\n")
    (path.parent / "results.md").write_text(markdown(results))
    (path.parent / "summary.md").write_text(summary(results))
    for sc in results["scenarios"]:
        if sc["points"]:
            plot(results, sc, path.parent / f"{sc['name']}.png")
    print(f"wrote {path.parent / 'results.md'} and {len(results['scenarios'])} plot(s)")
    for t in results["targets"]:
        mark = {True: "holds", False: "MISSED", None: "not run", "info": "info"}[t["holds"]]
        print(f"  {mark:8} {t['target']}: {t['measured']}")


if __name__ == "__main__":
    main()
