"""Compute adapters behind one contract, with one lifecycle and one poll loop."""
