"""Audit trail: writer, file guard, formats, hash chain, anchors, verification, tail.

Modules are imported directly (``relay_shell.governance.audit.writer`` ...): this package
re-exports nothing, so ``--verify-audit`` loads only the verifier and not the settings
model the writer needs.
"""
