"""Audit trail: writer, formats, hash chain, verification, tail (SPEC §7)."""
