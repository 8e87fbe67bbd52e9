"""The study's answer with honest intervals: pass@k and tests, clustered intervals, the power
planner, and the analysis of every run's records.
"""
