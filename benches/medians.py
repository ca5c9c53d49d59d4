#!/usr/bin/env python3
"""Prints the median of every criterion benchmark under target/criterion,
one line each: `group/name  median`. Run after `cargo bench`."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
for estimates in sorted(root.glob("*/*/new/estimates.json")):
    bench = estimates.parent.parent
    median = json.loads(estimates.read_text())["median"]["point_estimate"]
    print(f"{bench.parent.name}/{bench.name}\t{median:.1f} ns")
