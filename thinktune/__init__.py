"""thinktune: the library behind the Deep-vs-Diverse LoRA study.

Each pipeline stage in ``stages/`` is a thin command over these subpackages, in pipeline order:

- ``config``: params.yaml as typed, validated settings; presets; local inputs checked up front
- ``data``: CodeGen rows and the chats built from them (``<think>`` reasoning, then the code)
- ``models``: the base model's source (hub, PyPI GGUF chunks, local), precision from the
  hardware, and the base with a LoRA adapter applied unmerged
- ``training``: the LoRA fine-tuning loop (padding-free, token-budgeted, resumable)
- ``generation``: the continuous-batching decode engine and chat generation
- ``grading``: the program taken from an answer, test cases, and the sandbox that runs it
- ``benchmarks``: LiveCodeBench and HumanEval behind one interface
- ``evaluation``: a set of models scored on a benchmark, and the records it leaves
- ``analysis``: pass@k, clustered intervals, the power planner, the study's answer
- ``reporting``: the Pass@1 curve, the report and the headline metrics

and a few modules every part uses: ``errors`` (one-line errors a user can fix), ``logs``,
``atomic`` (outputs written whole or not at all), ``layout`` (where each run's files live)
and ``codedeps`` (which project files a stage runs: its DVC code dependencies).
"""
