#!/usr/bin/env bash
# Set up (if needed) and run the built-in default end to end: fine-tune the MiniLM teacher on Rotten
# Tomatoes (cached after the first run), distil a student, train a no-teacher baseline, print the report.
# Extra arguments go to `textdistill demo` (e.g. --train.epochs 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/textdistill demo "$@"
