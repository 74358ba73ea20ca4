"""Federates of the hierarchical P2P energy-market co-simulation.

Each sub-package holds pure logic (no HELICS import) plus a thin ``federate.py`` shell.
"""
