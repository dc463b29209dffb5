"""Stopping a run safely: on request (Ctrl-C) at a step boundary, and on a loss that is not finite.

Both stops happen between optimizer steps, so what is saved (or kept) is a consistent state: a
checkpoint the run continues from with `--resume`.
"""

from __future__ import annotations

import math
import signal
import threading

import torch

from textdistill.errors import TextDistillError


def earliest_end(step: int, since_best: int, patience: int | None, eval_every: int, min_steps: int, steps: int) -> int:
    """The first step at which early stopping can end a training evaluated at `step`, with `since_best`
    evaluations without improvement so far: every later evaluation (each `eval_every` steps) failing to
    improve, and none before `min_steps`; `steps` without early stopping or when that comes first."""
    if patience is None:
        return steps
    end = step + max(patience - since_best, 1) * eval_every
    if end < min_steps:
        end = math.ceil(min_steps / eval_every) * eval_every
    return min(end, steps)


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal after saving a checkpoint; `code` is the shell's exit status (128 + signal).
    The message ends with how to continue, `hint`; a caller that continues differently swaps it
    (`with_hint`)."""

    def __init__(self, message: str, signum: int, hint: str = "continue with --resume"):
        super().__init__(f"{message}; {hint}")
        self.message, self.signum, self.code = message, signum, 128 + signum

    def with_hint(self, hint: str) -> "Interrupted":
        return Interrupted(self.message, self.signum, hint)


class StopRequest:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a request the loop honours at the next step boundary.

    Stopping in the middle of `optimizer.step()` would leave half-updated weights; the loop instead
    finishes the step, saves a checkpoint and raises `Interrupted`. A second signal stops at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def agreed(self, accelerator) -> int | None:
        """The signal if any process received one: every process must stop at the same step."""
        if accelerator.num_processes == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=accelerator.device)
        return int(accelerator.reduce(flag, "max").item()) or None


class FiniteWatch:
    """Finds the first optimizer step whose loss is not finite, and names the term, step and examples.

    On one CPU process the check runs every step (reading a CPU tensor is free). On a GPU, or with several
    processes, `record` only updates tensors on the device, with no host sync per step; `check` reads them
    and runs before anything is saved, so no checkpoint or best-weights file ever holds such a step.
    """

    def __init__(self, name: str, accelerator):
        self.name = name
        self.every_step = accelerator.num_processes == 1 and accelerator.device.type == "cpu"
        self.first_step = torch.zeros((), dtype=torch.long, device=accelerator.device)
        self.first_values: torch.Tensor | None = None
        self.term_names: list[str] = []
        self.groups: dict[int, list[list[int]]] = {}  # examples of the steps since the last check

    def record(self, step: int, loss: torch.Tensor, terms: dict[str, torch.Tensor], group: list[list[int]],
               last_good: str) -> None:
        self.groups[step] = group
        self.term_names = sorted(terms)
        values = torch.stack([terms[k].float().reshape(()) for k in self.term_names]) if terms else loss.reshape(1)
        bad = ~torch.isfinite(loss)
        if self.every_step:
            if bad:
                raise self._error(step, values, last_good)
            self.groups.clear()
            return
        new = bad & (self.first_step == 0)
        self.first_step = torch.where(new, step, self.first_step)
        self.first_values = values if self.first_values is None else torch.where(new, values, self.first_values)

    def check(self, accelerator, last_good: str) -> None:
        """Raise if a recorded step had a non-finite loss on any process (a host sync: call it sparingly)."""
        if self.every_step or self.first_values is None:
            return
        steps = accelerator.gather(self.first_step.reshape(1))  # [P]
        values = accelerator.gather(self.first_values.reshape(1, -1))  # [P, terms]
        bad = [(int(s), p) for p, s in enumerate(steps.tolist()) if s > 0]
        if bad:
            step, process = min(bad)
            raise self._error(step, values[process], last_good)
        self.groups.clear()

    def _error(self, step: int, values: torch.Tensor, last_good: str) -> TextDistillError:
        names = self.term_names or ["loss"]
        terms = ", ".join(f"{n}={v}" for n, v in zip(names, values.tolist()) if not math.isfinite(v))
        examples = [i for index in self.groups.get(step, []) for i in index]
        shown = ", ".join(map(str, examples[:8])) + (f" ... ({len(examples)} in all)" if len(examples) > 8 else "")
        return TextDistillError(
            f"{self.name}: loss is not finite at step {step} (term {terms or 'loss'}); batch examples "
            f"(indices into the training data) {shown or 'unknown'}; stopped without saving, {last_good}; "
            "check those examples and the teacher outputs for inf/NaN, lower train.learning_rate or set "
            "train.max_grad_norm, then continue with --resume"
        )
