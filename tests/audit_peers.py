"""Real anchor sinks for tests: a journald in its own namespace, an rsyslog on loopback (TCP or TLS).

- :func:`journald` starts ``systemd-journald <namespace>`` (sockets under
  ``/run/systemd/journal.<namespace>/``, read back with ``journalctl --namespace``), so it
  never touches the machine's default journal; it is stopped by its pid and its journal
  files removed.
- :func:`rsyslog` starts ``rsyslogd -n`` with ``imtcp`` on a loopback port (``gtls`` with a
  CA made here for TLS) writing ``RSYSLOG_SyslogProtocol23Format`` lines to a file.

Waiting is polling with a bounded deadline, never a sleep standing in for an event.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

JOURNALD = Path("/lib/systemd/systemd-journald")
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def wait_until[T](probe: Callable[[], T | None], what: str, timeout_s: float = 20.0) -> T:
    """Poll ``probe`` until it returns something truthy (bounded); that value is returned."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGKILL) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)


@dataclass
class Journald:
    namespace: str
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return Path(f"/run/systemd/journal.{self.namespace}/socket")

    @property
    def spec(self) -> str:
        return f"journald:{self.socket}"

    def entries(self, identifier: str = "relay-shell-audit") -> list[dict[str, str]]:
        done = subprocess.run(
            [
                "journalctl",
                "--no-pager",
                "-q",
                "--all",
                "-o",
                "json",
                f"--namespace={self.namespace}",
                f"SYSLOG_IDENTIFIER={identifier}",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]

    def wait_for(self, count: int, timeout_s: float = 20.0, **match: str) -> list[dict[str, str]]:
        """Entries once at least ``count`` of them have every field of ``match``."""

        def probe() -> list[dict[str, str]] | None:
            found = self.entries()
            hits = [entry for entry in found if all(entry.get(key) == value for key, value in match.items())]
            return found if len(hits) >= count else None

        return wait_until(probe, f"{count} journal entries matching {match}", timeout_s)

    def stop(self) -> None:
        _stop(self.process)


@contextmanager
def journald() -> Iterator[Journald]:
    namespace = "rsaudit" + secrets.token_hex(4)
    process = subprocess.Popen(
        [str(JOURNALD), namespace], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    instance = Journald(namespace, process)
    try:
        wait_until(lambda: instance.socket.exists() and _listening(instance.socket), "the journal socket")
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(f"/run/systemd/journal.{namespace}", ignore_errors=True)
        machine = Path("/etc/machine-id").read_text().strip() if Path("/etc/machine-id").exists() else "*"
        for root in (Path("/var/log/journal"), Path("/run/log/journal")):
            shutil.rmtree(root / f"{machine}.{namespace}", ignore_errors=True)


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@dataclass
class Rsyslog:
    directory: Path
    port: int
    tls_ca: Path | None
    process: subprocess.Popen[bytes] | None = None

    @property
    def output(self) -> Path:
        return self.directory / "received.log"

    @property
    def spec(self) -> str:
        return f"syslog+{'tls' if self.tls_ca else 'tcp'}://127.0.0.1:{self.port}"

    def lines(self) -> list[str]:
        return self.output.read_text(encoding="utf-8").splitlines() if self.output.exists() else []

    def wait_for(self, count: int, needle: str = "relay-shell-audit", timeout_s: float = 20.0) -> list[str]:
        """The received lines once at least ``count`` of them contain ``needle``."""

        def probe() -> list[str] | None:
            lines = self.lines()
            return lines if sum(needle in line for line in lines) >= count else None

        return wait_until(probe, f"{count} collector lines with {needle!r}", timeout_s)

    def start(self) -> None:
        config = self.directory / "rsyslog.conf"
        port_file = self.directory / "port"
        port_file.unlink(missing_ok=True)
        config.write_text(self._config(port_file))
        self.process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(config), "-i", str(self.directory / "rsyslog.pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if self.port:  # a restart: same port (the port file is only written for port 0)
            wait_until(lambda: _tcp_open(self.port), "rsyslog to listen again")
        else:
            self.port = int(
                wait_until(lambda: port_file.exists() and port_file.read_text().strip(), "rsyslog's port")
            )

    def stop(self, *, crash: bool = False) -> None:
        """An orderly stop (SIGTERM: rsyslog writes what it received), or a crash (SIGKILL)."""
        if self.process is not None:
            _stop(self.process, signal.SIGKILL if crash else signal.SIGTERM)
            self.process = None
        wait_until(lambda: not _tcp_open(self.port), "rsyslog's port to close")

    def _config(self, port_file: Path) -> str:
        tls = ""
        stream = ""
        if self.tls_ca is not None:
            tls = (
                f' DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{self.tls_ca}"'
                f' DefaultNetstreamDriverCertFile="{self.directory / "cert.pem"}"'
                f' DefaultNetstreamDriverKeyFile="{self.directory / "key.pem"}"'
            )
            stream = ' StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"'
        return (
            f'global(workDirectory="{self.directory}" maxMessageSize="256k"{tls})\n'
            f'module(load="imtcp"{stream})\n'
            f'input(type="imtcp" address="127.0.0.1" port="{self.port}" listenPortFileName="{port_file}")\n'
            f'*.* action(type="omfile" file="{self.output}" template="RSYSLOG_SyslogProtocol23Format")\n'
        )


@contextmanager
def rsyslog(directory: Path, *, tls: bool = False) -> Iterator[Rsyslog]:
    directory.mkdir(parents=True, exist_ok=True)
    instance = Rsyslog(directory, 0, make_test_ca(directory) if tls else None)
    instance.start()
    try:
        yield instance
    finally:
        if instance.process is not None:
            _stop(instance.process)


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def make_test_ca(directory: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 (``ca.pem``, ``cert.pem``, ``key.pem``)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay-shell test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_file, 0o600)
    return directory / "ca.pem"
