"""What runs on every node: the agent (its engine and driver), the PMI-1 server, the launcher relays.

Imported by every node at start-up: it stays light (no MPI, no numba, no Click).
"""
