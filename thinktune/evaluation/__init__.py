"""Evaluating a set of models on a benchmark: generate, grade, and the per-problem records later
stages read.
"""
