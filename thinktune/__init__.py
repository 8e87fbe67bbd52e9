"""thinktune: library behind the Deep-vs-Diverse LoRA study.

Each pipeline stage in ``stages/`` is a thin command over these modules:

- ``params``: typed, validated view of params.yaml
- ``atomic``: write-to-temp-then-rename helpers, JSONL I/O
- ``modelsource``: base model from PyPI GGUF chunks or the hub, saved as safetensors
- ``codegen``: CodeGen-Deep/Diverse rows (schema, loading)
- ``livecodebench``: LiveCodeBench rows (schema, private-test decoding, filters)
- ``chat``: system prompt + problem + ``<think>`` answer as chat messages; eval prompts
- ``hardware``: precision from the hardware
- ``training``: LoRA fine-tuning loop over accelerate (padding-free, token-budgeted, resumable, multi-process)
- ``generation``: batched chat generation
- ``extract``: code from a model answer (after the reasoning)
- ``sandbox`` / ``grading``: running untrusted programs, LiveCodeBench verdicts
- ``stats``: pass@k, intervals, paired tests
- ``plotting`` / ``reporting``: the curve and the study's table
"""
