"""Restraints on (W0, ΔW): PRUNE and RECT; spectrum tracking."""
