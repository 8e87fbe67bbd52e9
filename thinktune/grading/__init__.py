"""Verdicts on model-written programs: the program taken from an answer, the test cases, and the
sandbox that runs each program against them.
"""
