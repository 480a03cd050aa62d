#!/usr/bin/env python3
"""Start-up time of `tinyserve serve` on a model folder: wall time until it listens, and the CPU
it spent getting there, for two binaries side by side (A B A B ...), with the ratio pair by pair.

usage: bench/startup.py --a BINARY --b BINARY --models DIR [--runs N] [-- EXTRA SERVE ARGS]
"""

import argparse
import os
import statistics
import subprocess
import time


def start_once(binary, models, extra):
    began = time.monotonic()
    proc = subprocess.Popen([binary, "serve", "--port", "0", "--models", models, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("listening on"):
            break
    wall = time.monotonic() - began
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    proc.kill()
    proc.wait()
    return wall, cpu


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", required=True)
    parser.add_argument("--b", required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()
    start_once(args.a, args.models, args.extra)  # warm the page cache
    pairs = []
    for _ in range(args.runs):
        a = start_once(args.a, args.models, args.extra)
        b = start_once(args.b, args.models, args.extra)
        pairs.append((a, b))
        print(f"A wall {a[0]:6.2f} s cpu {a[1]:6.2f} s   B wall {b[0]:6.2f} s cpu {b[1]:6.2f} s   "
              f"A/B wall {a[0] / b[0]:.2f}")
    med = lambda xs: statistics.median(xs)
    print(f"median A: wall {med([p[0][0] for p in pairs]):.2f} s, cpu {med([p[0][1] for p in pairs]):.2f} s; "
          f"B: wall {med([p[1][0] for p in pairs]):.2f} s, cpu {med([p[1][1] for p in pairs]):.2f} s; "
          f"A/B wall ratio median {med([p[0][0] / p[1][0] for p in pairs]):.2f}")


if __name__ == "__main__":
    main()
