"""Governance: the stages every call passes through (docs/architecture.md)."""
