"""Instructions per call of bare OpenTelemetry and of flowtel, counted by valgrind.

    python benchmarks/bench_instructions.py [--cases small,chat,tree]

On a shared or noisy machine timings drift; instruction counts do not. Each case runs under
``valgrind --tool=callgrind`` twice, with 500 and with 2500 calls after a warm-up, and the
difference divided by 2000 is the cost of one call (start-up and warm-up cancel out). flowtel runs
with delivery held, as in the "idle" column of ``bench_overhead.py`` (the size estimate made on
submit included). Needs ``valgrind``; prints a note and exits 0 without it.

Instruction counts are not time: code that touches more memory or branches less predictably
runs slower per instruction, so read them next to ``bench_overhead.py``, not instead of it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

_CHILD = """
import sys
sys.path.insert(0, {bench_dir!r})
import bench_overhead as b
from flowtel.tracing import _runtime
mode, case, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "bare":
    fn = b.bare_otel_cases()["small" if case == "start_span" else case]
else:
    held = b._HeldPipeline(keep=0)
    _runtime.set_destinations([_runtime.Destination(exporter=b._NullTraceExporter(), pipeline=held)])
    fn = b.flowtel_cases()[case]
for _ in range(300):
    fn()
for _ in range(n):
    fn()
"""


def instructions(valgrind: str, script: Path, mode: str, case: str, calls: int) -> int:
    out = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, str(script), mode, case,
         str(calls)],
        capture_output=True, text=True, check=True,
    )
    match = re.search(r"Collected\s*:\s*([\d,]+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def per_call(valgrind: str, script: Path, mode: str, case: str) -> float:
    return (instructions(valgrind, script, mode, case, 2500) - instructions(valgrind, script, mode, case, 500)) / 2000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="small,chat,tree")
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("bench_instructions: valgrind is not installed; skipped.")
        return 0
    bench_dir = Path(__file__).resolve().parent
    script = bench_dir / ".bench_instructions_child.py"
    script.write_text(_CHILD.format(bench_dir=str(bench_dir)))
    try:
        print(f"\ninstructions per call (valgrind callgrind, Python {sys.version.split()[0]})")
        print(f"{'case':12} {'bare OTel':>12} {'flowtel':>12} {'ratio':>7}")
        for case in args.cases.split(","):
            bare = per_call(valgrind, script, "bare", case)
            ours = per_call(valgrind, script, "flowtel", case)
            print(f"{case:12} {bare:12,.0f} {ours:12,.0f} {ours / bare:6.2f}x")
    finally:
        script.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
