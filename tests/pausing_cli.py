"""The `textdistill` command, paused right after one training checkpoint until a signal reaches it.

    TEXTDISTILL_PAUSE_AT=baseline:3 python tests/pausing_cli.py distill ...

A test that signals a real run when a checkpoint appears otherwise races the run: on a busy machine the
training can finish before the signal lands. Here, before the checkpoint `<name>:<step>` is saved, SIGINT
and SIGTERM are caught by a recorder; once the checkpoint is there the run waits until one has arrived,
then hands it to the run's own handler as if it had just come. The signal always lands in that step;
SIGKILL needs no help.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from textdistill.cli import main
from textdistill.training import loop

name, step = os.environ["TEXTDISTILL_PAUSE_AT"].split(":")
SIGNALS = {signal.SIGINT, signal.SIGTERM}
real_save = loop.save_checkpoint


def pausing_save(checkpoints, run_name, progress, **kwargs):
    if run_name != name or progress.step != int(step):
        return real_save(checkpoints, run_name, progress, **kwargs)
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in SIGNALS}
    found = real_save(checkpoints, run_name, progress, **kwargs)  # the checkpoint the test waits for appears
    while not received:
        time.sleep(0.01)  # Python runs signal handlers in the main thread, between these sleeps
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    signal.raise_signal(received[0])
    return found


loop.save_checkpoint = pausing_save
main(sys.argv[1:])
