#!/usr/bin/env python3
"""Prints the median of every criterion benchmark under target/criterion,
one line each: `group/name  median`, and for benchmarks that declare a
throughput in elements, the elements per second at that median. Run after
`cargo bench`."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
for estimates in sorted(root.glob("*/*/new/estimates.json")):
    bench = estimates.parent.parent
    median = json.loads(estimates.read_text())["median"]["point_estimate"]
    line = f"{bench.parent.name}/{bench.name}\t{median:.1f} ns"
    meta = estimates.parent / "benchmark.json"
    if meta.exists():
        throughput = json.loads(meta.read_text()).get("throughput") or {}
        if "Elements" in throughput:
            line += f"\t{throughput['Elements'] * 1e3 / median:.3f} M/s"
    print(line)
