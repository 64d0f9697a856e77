"""The governance compiler: scope markdown -> IR -> findings + coverage bits -> Policy.

Pure: no imports from ``gateway`` or ``providers``; no I/O beyond reading the documents handed in.
"""
