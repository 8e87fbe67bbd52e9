"""Generation for a set of checkpoints in one process or sharded across several.

``open_generator(base_dir, params, n)`` gives an object with
``generate(adapter_dir, chats, settings, label) -> answers`` and
``generate_many(adapter_dirs, chats, settings, label) -> answers per adapter``; the base
model is loaded once per process (``thinktune.models.host``) and each checkpoint's adapter
applied unmerged. ``generate_many`` decodes every adapter's rows in one batch (a row applies
its own checkpoint's LoRA weights, ``thinktune.models.lora``), so the base weights are read
once per step for all of them; each answer is the one that adapter gives decoded alone.

With ``eval.num_processes`` = N > 1, N worker processes (spawned, so CUDA initialises in
each) hold one device each: ``cuda:<rank>`` when there are N GPUs, otherwise the CPU with
its cores split between them. The prompts are dealt out longest first, round robin, so
every shard gets a similar mix; each answer is sampled from its own seed (its prompt's
place in the whole list), so the gathered answers equal a one-process run's, and are graded
once by the caller. No collective communication is needed, so no process group: each
worker is a plain ``python -m thinktune.generation.parallel <fd>`` child, and a socket pair carries
chats out and answers back (``multiprocessing.connection``'s pickling; no spawn machinery,
so no resource-tracker process outlives the run).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from thinktune.generation.chats import (
    Generation,
    chat_prompt_ids,
    decode_answers,
    generate_tokens,
    stop_token_ids,
)
from thinktune.generation.settings import DecodingSettings
from thinktune.logs import get_logger
from thinktune.models.host import ModelHost

log = get_logger("parallel")


def device_for(rank: int, world: int) -> str:
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    if torch.cuda.device_count() < world:
        raise ValueError(f"eval.num_processes is {world} but only {torch.cuda.device_count()} CUDA device(s) "
                         "are visible; lower eval.num_processes or expose more GPUs")
    return f"cuda:{rank}"


class LocalGenerator:
    """Generation in this process, on one device."""

    def __init__(self, base_dir: Path, precision: str, device: str = "cpu", cuda_graphs: bool = True,
                 rank: int = 0):
        self.host = ModelHost(base_dir, precision, device)
        self.mode = "auto" if cuda_graphs else "eager"
        self.rank = rank
        self.engine = None  # kept from one checkpoint to the next: same slots, cache, CUDA graphs
        self.last_stats: dict = {}  # the decode engine's figures for the last generate()

    def generate(self, adapter_dir: Path | None, chats: list[list[dict]], settings: DecodingSettings,
                 label: str, keys: list[int] | None = None) -> list[list[Generation]]:
        """Answers [chat][sample] of the base with ``adapter_dir`` (``None``: the base alone)."""
        return self.generate_many([adapter_dir], chats, settings, label, keys)[0]

    def generate_many(self, adapter_dirs: list[Path | None], chats: list[list[dict]], settings: DecodingSettings,
                      label: str, keys: list[int] | None = None) -> list[list[list[Generation]]]:
        """Answers [adapter][chat][sample]: every adapter's rows decoded in one batch of
        ``settings.batch_size`` slots (``None`` in the list: the base model's answers)."""
        if not chats:
            return [[] for _ in adapter_dirs]
        tokenizer = self.host.tokenizer
        with self.host.adapted_set(adapter_dirs) as model:
            together = len(adapter_dirs) if any(a is not None for a in adapter_dirs) else 1
            run = generate_tokens(model, chat_prompt_ids(tokenizer, chats), settings, stop_token_ids(model, tokenizer),
                                  keys=keys, engine=self.engine, desc=label, mode=self.mode, adapters=together)
        self.engine = run.engine
        self.last_stats = run.stats.as_dict()
        log.info("%s: %s", label, self.last_stats)
        if self.engine.device.type == "cuda" and not self.last_stats["cuda_graphs"]:
            log.warning("%s: decoded without CUDA graphs (%s)", label, self.last_stats["graphs_off_reason"])
        answers = [decode_answers(tokenizer, run, a) for a in range(together)]
        return answers if together == len(adapter_dirs) else answers * len(adapter_dirs)

    def close(self) -> None:
        pass


def _serve(conn: Connection) -> None:
    """A worker process: load once, then answer (adapters, chats, settings, label, keys) messages."""
    try:
        import torch

        rank, world, base_dir, precision, cuda_graphs = conn.recv()
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        device = device_for(rank, world)
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        generator = LocalGenerator(base_dir, precision, device, cuda_graphs, rank)
        conn.send(("ready", generator.host.device))
        while (message := conn.recv()) is not None:
            adapter_dirs, chats, settings, label, keys = message
            answers = generator.generate_many(adapter_dirs, chats, settings, f"{label} [{rank}]", keys)
            conn.send(("ok", (answers, generator.last_stats)))
    except (EOFError, KeyboardInterrupt):
        pass
    except BaseException:  # noqa: BLE001 - the parent reports it and stops
        conn.send(("error", traceback.format_exc()))


class ShardedGenerator:
    """``world`` worker processes, one device each; answers gathered in prompt order."""

    def __init__(self, base_dir: Path, precision: str, world: int, cuda_graphs: bool = True):
        package_root = str(Path(__file__).resolve().parents[2])  # thinktune/generation/ -> the repository
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self.workers: list[tuple[subprocess.Popen, Connection]] = []
        self.last_stats: dict = {}
        try:
            for rank in range(world):
                ours, theirs = socket.socketpair()
                process = subprocess.Popen([sys.executable, "-m", "thinktune.generation.parallel", str(theirs.fileno())],
                                           pass_fds=(theirs.fileno(),), env=env)
                theirs.close()
                conn = Connection(ours.detach())
                conn.send((rank, world, Path(base_dir), precision, cuda_graphs))
                self.workers.append((process, conn))
            devices = [self._receive(rank) for rank in range(world)]
        except BaseException:
            self.close()
            raise
        log.info("%d generation processes ready on %s", world, ", ".join(map(str, devices)))

    def _receive(self, rank: int):
        process, conn = self.workers[rank]
        try:
            status, payload = conn.recv()
        except EOFError:
            raise RuntimeError(f"generation process {rank} ended (exit code {process.wait(10)})") from None
        if status == "error":
            raise RuntimeError(f"generation process {rank} failed:\n{payload}")
        return payload

    def generate(self, adapter_dir: Path | None, chats: list[list[dict]], settings: DecodingSettings,
                 label: str, keys: list[int] | None = None) -> list[list[Generation]]:
        return self.generate_many([adapter_dir], chats, settings, label, keys)[0]

    def generate_many(self, adapter_dirs: list[Path | None], chats: list[list[dict]], settings: DecodingSettings,
                      label: str, keys: list[int] | None = None) -> list[list[list[Generation]]]:
        """As ``LocalGenerator.generate_many``; each worker decodes its shard of the chats for every adapter."""
        keys = list(range(len(chats))) if keys is None else keys
        order = sorted(range(len(chats)), key=lambda i: (-len(str(chats[i])), i))
        shards = [order[rank::len(self.workers)] for rank in range(len(self.workers))]
        for (_, conn), shard in zip(self.workers, shards, strict=True):
            conn.send((list(adapter_dirs), [chats[i] for i in shard], settings, label, [keys[i] for i in shard]))
        answers: list[list] = [[None] * len(chats) for _ in adapter_dirs]
        shard_stats = []
        for rank, shard in enumerate(shards):
            shard_answers, stats = self._receive(rank)
            shard_stats.append(stats)
            for adapter_answers, received in zip(answers, shard_answers, strict=True):
                for i, result in zip(shard, received, strict=True):
                    adapter_answers[i] = result
        reasons = [s["graphs_off_reason"] for s in shard_stats if s.get("graphs_off_reason")]
        self.last_stats = {"cuda_graphs": all(s.get("cuda_graphs") for s in shard_stats),
                           "graphs_off_reason": reasons[0] if reasons else None,
                           "new_tokens": sum(s.get("new_tokens", 0) for s in shard_stats), "shards": shard_stats}
        return answers  # every prompt is in one shard

    def close(self) -> None:
        for _, conn in self.workers:
            try:
                conn.send(None)
            except OSError:
                pass
        for process, conn in self.workers:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            conn.close()
        self.workers = []


def open_generator(base_dir: Path, precision: str, num_processes: int, cuda_graphs: bool = True):
    """One generator for a checkpoint set: in this process when ``num_processes`` is 1."""
    device_for(num_processes - 1, num_processes)  # too few GPUs: say so before starting anything
    if num_processes == 1:
        return LocalGenerator(base_dir, precision, device_for(0, 1), cuda_graphs)
    return ShardedGenerator(base_dir, precision, num_processes, cuda_graphs)


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
