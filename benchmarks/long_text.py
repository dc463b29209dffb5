"""Cost of one very long text in the data: tokenising a split that holds it, time and peak memory.

    python benchmarks/long_text.py --megabytes 10

Tokenises 2,000 Rotten Tomatoes-like texts plus one text of `--megabytes` MB of English words with the
packaged MiniLM tokenizer, through `textdistill.data.labelled.encode` at max_length 64 (what a run
does with its training split), in a fresh process so its peak resident memory is the encode's. Prints the
seconds and the peak RSS, with and without the long text.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time

WORDS = ("the film was a lovely and moving story but far too long with dull actors and a weak plot that "
         "never really goes anywhere although the music is superb").split()


def child(megabytes: float) -> None:
    from textdistill.data.labelled import TextSplit, encode
    from textdistill.models.loading import load_tokenizer, resolve_model_dir

    rng = random.Random(0)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(10, 40))) for _ in range(2000)]
    if megabytes:
        words = []
        size = 0
        while size < megabytes * 2**20:
            w = rng.choice(WORDS)
            words.append(w)
            size += len(w) + 1
        texts.append(" ".join(words))
    tokenizer = load_tokenizer(resolve_model_dir("minilm", "teacher.base"), "teacher")
    started = time.perf_counter()
    enc = encode(tokenizer, TextSplit(texts=texts, labels=["pos"] * len(texts)), [1] * len(texts), 64, "train")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"megabytes": megabytes, "examples": len(enc), "seconds": round(seconds, 2),
                      "peak_rss_mb": round(peak_mb)}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=10.0)
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return 0
    for mb in (0.0, args.megabytes):
        out = subprocess.run([sys.executable, __file__, "--child", str(mb)], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
