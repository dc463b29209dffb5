"""Several processes, one run: what each does when `accelerate launch` or `torchrun` starts the command.

Every process runs the same code (data parallelism through accelerate, torch.distributed underneath).
Each optimizer step's micro-batches are split between the processes, so the global batch is the one a
single process would see; the main process alone scores the data with the teacher (the result is
broadcast) and writes files. One process is the same code with a world of one.
"""

from __future__ import annotations

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, broadcast

from textdistill.errors import TextDistillError


def process_state() -> PartialState:
    """The process group of this run (set up from the launcher's environment; a world of one otherwise)."""
    return PartialState(cpu=not torch.cuda.is_available())


def is_main() -> bool:
    return process_state().is_main_process


def wait_for_everyone() -> None:
    process_state().wait_for_everyone()


def share_from_main(tensor: torch.Tensor) -> torch.Tensor:
    """The main process's `tensor` on every process; the others pass an empty tensor of the same shape."""
    state = process_state()
    if state.num_processes == 1:
        return tensor
    # NCCL only moves tensors that live on the GPU
    return broadcast(tensor.to(state.device), from_process=0).cpu()


def process_share(group: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This process's part of one optimizer step: every `world`-th example of each micro-batch.

    Micro-batches are sorted by length, so the strided split gives every process examples of the same
    length (little padding, equal work). Micro-batches left empty are dropped.
    """
    if world == 1:
        return group
    return [part for index in group if (part := index[rank::world])]


def check_data_parallel(accelerator) -> None:
    """The loop replicates the model on every process (DDP). Sharded engines change what a state dict, an
    optimizer step and a saved model are; rather than save wrong weights, they are refused."""
    kind = accelerator.distributed_type
    if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise TextDistillError(
            f"{kind.value} is not supported: textdistill trains with data parallelism (each process holds the whole "
            "student); launch with a DDP config such as configs/accelerate/multi_gpu.yaml (see docs/guide/scaling.md)"
        )
