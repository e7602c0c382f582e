"""The admin-command rows of ``test_redaction_forms.py`` stay linear: each trigger repeated over
64 KiB (a denser text than the quarter MiB of the other triggers there, so the same bound
costs a fraction of the time: a quadratic rule over these thousands of words would take
minutes, far past the timeout).
"""

from __future__ import annotations

import pytest

from relay_shell.governance.redaction import redact_text

ADVERSARIAL = [
    "net use \\\\h\\s ",
    "net use /user:a ",
    "smbclient //h/s ",
    "sc password= ",
    "wmic /password:",
    "mongodump -p ",
    "plink -pw ",
    "ConvertTo-SecureString -AsPlainText ",
    "mc alias set ",
]


# 64 KiB of each trigger: linear redaction takes a fraction of a second; a quadratic rule
# over its thousands of words would take minutes, far past the timeout.
TRIGGER_BYTES = 1 << 16


@pytest.mark.timeout(10)
@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_a_trigger_repeated_stays_linear(unit: str) -> None:
    text = unit * (TRIGGER_BYTES // len(unit))
    once = redact_text(text)
    assert redact_text(once) == once
