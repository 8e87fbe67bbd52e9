"""Training data: the CodeGen datasets' rows, and the chats (``<think>`` reasoning, then the code)
that training and evaluation share.
"""
