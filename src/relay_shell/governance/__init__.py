"""Governance: the stages every call passes through (SPEC §1)."""
