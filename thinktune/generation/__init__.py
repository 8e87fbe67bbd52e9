"""Answers from a model: the continuous-batching decode engine, the token chooser, chat rendering,
and generation sharded over processes.
"""
