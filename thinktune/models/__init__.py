"""The base model: where it comes from (hub, PyPI GGUF chunks, a local folder), which precision the
hardware runs, and the base with a LoRA adapter applied unmerged.
"""
