"""The benchmarks every checkpoint is scored on (LiveCodeBench, HumanEval): where their problems
come from and how an answer is judged.
"""
