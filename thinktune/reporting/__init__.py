"""What a reader sees: the Pass@1 curve's data and figure, the report, and the headline metrics.
"""
