"""Audit trail: writer, formats, hash chain, verification, tail (docs/adr/0009-audit-sink.md)."""

from relay_shell.governance.audit.chain import GENESIS, canonical_json, link
from relay_shell.governance.audit.formats import to_cef, to_jsonl, to_leef
from relay_shell.governance.audit.tail import tail_records
from relay_shell.governance.audit.verify import VerifyReport, verify_chain
from relay_shell.governance.audit.writer import AuditSink, utc_now

__all__ = [
    "GENESIS",
    "AuditSink",
    "VerifyReport",
    "canonical_json",
    "link",
    "tail_records",
    "to_cef",
    "to_jsonl",
    "to_leef",
    "utc_now",
    "verify_chain",
]
