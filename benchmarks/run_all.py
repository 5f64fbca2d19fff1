"""Run every benchmark in this folder, one after the other (``make bench``).

    python benchmarks/run_all.py [--quick] [names...]

``--quick`` passes each script its own ``--quick`` flag when it has one (smaller N).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("names", nargs="*", help="e.g. overhead serialize")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.names]
    failures = 0
    for script in scripts:
        print(f"\n===== {script.name} =====", flush=True)
        cmd = [sys.executable, str(script)]
        if args.quick and "--quick" in script.read_text():
            cmd.append("--quick")
        failures += subprocess.run(cmd, cwd=HERE.parent).returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
