"""Run a command in several data-parallel processes: torchrun for DDP, ``accelerate launch``
for an accelerate config (FSDP). The stage re-launches itself through this when
``train.num_processes`` > 1 and it is not already one of the launched workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def launched() -> bool:
    """True inside a worker started by torchrun or ``accelerate launch`` (both set LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ


def launch_command(num_processes: int, module: str, args: list[str], accelerate_config: str | None = None) -> list[str]:
    """The command line that runs ``python -m module *args`` in ``num_processes`` processes.

    Without a config: torchrun (``torch.distributed.run --standalone``), one process per GPU with
    NCCL, or per CPU process with gloo; accelerate reads the launched environment. With an
    accelerate config file (e.g. conf/accelerate/fsdp.yaml): ``accelerate launch`` with it.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    if accelerate_config:
        if not Path(accelerate_config).is_file():
            raise FileNotFoundError(f"train.accelerate_config: {accelerate_config} not found "
                                    "(a path relative to the repository root, e.g. conf/accelerate/fsdp.yaml)")
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
                "--num_processes", str(num_processes), "--module", module, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
            "--module", module, *args]


def relaunch(num_processes: int, module: str, args: list[str], accelerate_config: str | None = None) -> None:
    """Replace this process by the launcher (never returns)."""
    command = launch_command(num_processes, module, args, accelerate_config)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
