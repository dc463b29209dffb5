"""Fuzz the data loaders and the config parser with many random inputs; count them and any unhandled error.

A check of the code, not a measurement: the default suite runs the same targets with 40 inputs each.

    python scripts/fuzz.py --examples 5000

Runs the hypothesis strategies of tests/test_fuzz.py with `--examples` inputs per target (derandomized:
the same inputs on every run). Every input must give data, a config, or a one-line TextDistillError;
anything else is an unhandled error, printed with the input that caused it (exit status 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="random inputs per target")
    args = parser.parse_args()
    os.environ["TEXTDISTILL_FUZZ_EXAMPLES"] = str(args.examples)  # read when the strategies are imported
    sys.path.insert(0, str(TESTS))
    import logging

    import test_fuzz

    logging.getLogger("textdistill").setLevel(logging.ERROR)  # expected warnings (dropped rows, ...) are noise here
    # the property tests only (hypothesis marks them), not the check that their inputs repeat
    targets = [getattr(test_fuzz, name) for name in dir(test_fuzz)
               if name.startswith("test_") and hasattr(getattr(test_fuzz, name), "hypothesis")]
    unhandled = 0
    started = time.perf_counter()
    for target in targets:
        t0 = time.perf_counter()
        try:
            target()
        except Exception as e:  # hypothesis re-raises the first unhandled error with its (shrunk) input
            unhandled += 1
            print(f"UNHANDLED in {target.__name__}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        print(f"{target.__name__:52s} {time.perf_counter() - t0:6.1f} s")
    print()
    for name, count in sorted(test_fuzz.TRIED.items()):
        ok, error = test_fuzz.OUTCOMES[name, "ok"], test_fuzz.OUTCOMES[name, "error"]
        print(f"{name:20s} {count:7d} inputs: {ok:6d} loaded, {error:6d} one-line errors")
    total = sum(test_fuzz.TRIED.values())
    print(f"{'total':20s} {total:7d} inputs, {unhandled} unhandled errors, {time.perf_counter() - started:.0f} s")
    return 1 if unhandled else 0


if __name__ == "__main__":
    sys.exit(main())
