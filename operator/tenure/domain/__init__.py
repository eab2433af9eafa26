"""Pure decisions: what an identity should look like and what to do about it.

Nothing here performs I/O, reads the clock or logs: time and the observed world are arguments.
"""
