"""What n samples per problem cost when they share their prompt's prefill, against n separate prompts.

    python -m perf.sampling_cost                      # models/base, the eval's 12 sample prompts, n 10
    python -m perf.sampling_cost --samples 16 --max-new-tokens 64 --batch-size 32
    python -m perf.sampling_cost --tiny               # a tiny random model, seconds (what CI could run)

The decode engine prefills each prompt once and copies its keys and values into the slot of
each of its samples, whenever that sample enters the batch (``thinktune.generation.engine``).
The baseline decodes the same number of answers from n copies of each prompt under distinct
keys, so every copy is prefilled on its own. Answers end at end-of-answer tokens, so slots
free one at a time and samples of a prompt enter at different steps (``--stops K``: also end
at the K tokens whose first place in a greedy pass's answers varies most, because a random
model, or a short ``--max-new-tokens``, never reaches the real end of turn). Both sample at
the study's LiveCodeBench setting (temperature 0.2, top_p 0.95) with the same batch size;
the script prints wall time, prefill and decode seconds, the prefill forwards and the prompt
tokens they ran (counted at the engine's prefill, so it measures any version of the engine),
and the ratio shared/separate. Throughput on a shared machine is comparable only within one
run; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from perf import add_model_arguments, sample_chats
from thinktune.generation.chats import chat_prompt_ids, generate_tokens
from thinktune.generation.settings import DecodingSettings


def load_text() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def prompts_and_model(args):
    """(model, prompt token ids): the eval stage's chats on models/base, or a tiny model's."""
    from thinktune.models.host import load_base

    if args.tiny:
        import sys
        import tempfile

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from tiny_model import build_tiny_model

        model, tokenizer = load_base(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"), "fp32")
        return model, [tokenizer(f"question {i} " * (20 + 7 * i)).input_ids for i in range(args.prompts or 4)]
    from thinktune.config.params import load_params

    params = load_params(args.params)
    model, tokenizer = load_base(args.base_model, args.precision or params.eval.precision)
    chats = sample_chats(params, args.problems)
    return model, chat_prompt_ids(tokenizer, chats)[: args.prompts or None]


def counted_prefills():
    """Counts the engine's prefill forwards and the prompt tokens they run: [calls, tokens]."""
    from thinktune.generation.engine import DecodeEngine

    counts = [0, 0]
    original = DecodeEngine._prefill

    def counting(self, prompts, *rest):
        counts[0] += 1
        counts[1] += sum(map(len, prompts))
        return original(self, prompts, *rest)

    DecodeEngine._prefill = counting
    return counts


def extra_stops(model, prompts, args) -> set[int]:
    """The ``args.stops`` tokens whose first place in a greedy pass's answers varies most."""
    from collections import Counter

    greedy = generate_tokens(model, prompts, DecodingSettings(max_new_tokens=args.max_new_tokens,
                                                              batch_size=args.batch_size), set(), progress=False)
    answers = [c[0].token_ids for c in greedy.completions]
    counts = Counter(t for a in answers for t in set(a))
    candidates = sorted((t for t, n in counts.items() if n < len(answers)),
                        key=lambda t: (-len({a.index(t) for a in answers if t in a}), t))
    return set(candidates[:args.stops])


def timed(name: str, model, prompts, keys, settings, stops, counts) -> dict:
    calls, tokens = counts
    started = time.perf_counter()
    run = generate_tokens(model, prompts, settings, stops, keys=keys, desc=name, mode="eager")
    wall = time.perf_counter() - started
    stats = run.stats
    lengths = sorted(len(c.token_ids) for samples in run.completions for c in samples)
    print(f"{name:>9}: {wall:7.1f} s wall (prefill {stats.prefill_s:6.1f} s, {counts[0] - calls} forwards of "
          f"{counts[1] - tokens} prompt tokens; decode {stats.decode_s:6.1f} s); {len(lengths)} answers of "
          f"{lengths[0]}-{lengths[-1]} tokens, {stats.new_tokens} new tokens; {load_text()}")
    return {"wall": wall, "prefill": stats.prefill_s, "tokens": counts[1] - tokens}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--prompts", type=int, default=0, help="use the first N prompts (0: all)")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stops", type=int, default=2, help="extra end-of-answer tokens (see above; 0: none)")
    args = parser.parse_args(argv)

    model, prompts = prompts_and_model(args)
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [] if eos is None else [eos])  # the model's end of turn
    stops |= extra_stops(model, prompts, args) if args.stops else set()
    counts = counted_prefills()
    n = args.samples
    print(f"{len(prompts)} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, {n} samples each, "
          f"{args.max_new_tokens} new tokens, batch {args.batch_size}, temperature 0.2, top_p 0.95, "
          f"end-of-answer tokens {sorted(stops)}")
    sampled = {"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "temperature": 0.2, "top_p": 0.95}
    shared = timed("shared", model, prompts, None, DecodingSettings(n_samples=n, **sampled), stops, counts)
    copies = [p for p in prompts for _ in range(n)]
    separate = timed("separate", model, copies, list(range(len(copies))), DecodingSettings(n_samples=1, **sampled),
                     stops, counts)
    print(f"shared/separate: wall {shared['wall'] / separate['wall']:.2f}, prefill "
          f"{shared['prefill'] / max(separate['prefill'], 1e-9):.2f}, prompt tokens prefilled "
          f"{shared['tokens'] / max(separate['tokens'], 1):.2f} (one prefill per prompt: {1 / n:.2f})")


if __name__ == "__main__":
    main()
