"""Parses a tinyserve /metrics page with the official Prometheus Python client's parser.

Usage: metrics_check.py --url http://HOST:PORT/metrics

Prints one JSON object on stdout: {"families": [{"name", "type", "samples": [{"name",
"labels", "value"}]}]}. The parser (prometheus_client.parser.text_string_to_metric_families)
raises on text that is not valid Prometheus exposition format; the script then exits 1 with
the error on stderr. tests/production.rs checks the values against the requests it made.
"""

import argparse
import json
import math
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    args = parser.parse_args()

    with urllib.request.urlopen(args.url, timeout=30) as response:
        status = response.status
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode("utf-8")
    if status != 200:
        print(f"GET {args.url}: status {status}", file=sys.stderr)
        return 1

    try:
        families = list(text_string_to_metric_families(text))
    except Exception as err:  # the parser's own error types vary between versions
        print(f"not valid Prometheus text: {err!r}\n--- page ---\n{text}", file=sys.stderr)
        return 1

    out = []
    for family in families:
        samples = []
        for sample in family.samples:
            value = sample.value
            if math.isinf(value) or math.isnan(value):
                value = str(value)
            samples.append({"name": sample.name, "labels": dict(sample.labels), "value": value})
        out.append({"name": family.name, "type": family.type, "samples": samples})
    print(json.dumps({"content_type": content_type, "families": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
