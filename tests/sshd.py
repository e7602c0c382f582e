"""Real OpenSSH ``sshd`` instances on loopback, for tests and benches.

Everything runs locally: keys are generated in-process with asyncssh, each instance gets
its own work directory, config and host key, and ``/usr/sbin/sshd -D -e -f CONFIG`` is
started as a direct child (the config is checked with ``sshd -t`` first). Logins use a
dedicated non-root account (``relaytest``, created on demand) because root's start-up
files make every command slow and a test must never log in as root.

API::

    SSHD_BINARY: Path                       /usr/sbin/sshd
    TEST_USER: str                          "relaytest"
    sshd_available() -> bool                is the binary installed?
    ensure_test_user(name=TEST_USER) -> str create the account if missing (idempotent), unlock it
    free_port(address="127.0.0.1") -> int   a TCP port nothing listens on right now
    user_directory(prefix, user=TEST_USER) -> Path  a fresh directory the user owns (remote paths are local)
    ClientKey.create(directory=None) -> ClientKey     an ed25519 key pair written to files
        .private_path, .public_path, .public_line     (files readable by the test user)
        .remove()                                     delete the key files
    start_sshd(client_key, *, address="127.0.0.1", port=None, host_key=None,
               max_startups="200:30:400", max_sessions=100, extra_config=()) -> SshdInstance
        max_startups / max_sessions = None keep OpenSSH's defaults (10:30:100 and 10);
        extra_config lines come first in sshd_config, so they override the defaults below them
    start_many(client_key, count, *, first_address="127.0.0.2", **options) -> list[SshdInstance]
        one sshd per address (127.0.0.2, 127.0.0.3, ...), started in parallel (options as
        start_sshd's: max_startups, max_sessions, extra_config, user)
    stop_all(instances) -> None
    descendants(pid) -> list[int]           every process below ``pid`` (sshd sessions, remote commands)

    SshdInstance
        .address, .port, .user, .client_key, .workdir, .config_path
        .host_key (asyncssh.SSHKey), .host_key_path
        .fingerprint                     "SHA256:..." of the host key
        .known_hosts_line()              "[addr]:port ssh-ed25519 AAAA...\\n" (plain addr for port 22)
        .target()                        "relaytest@addr:port"
        .restart(new_host_key=False)     stop, then start again on the same port
        .stop()                          kill the listener and every session it forked, and wait

Every wait is bounded (start: the port must be listening within 10 s). Stopping kills
the listener's whole process tree, so no ``sshd`` or remote command outlives a test.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import asyncssh

SSHD_BINARY = Path("/usr/sbin/sshd")
TEST_USER = "relaytest"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.005


def sshd_available() -> bool:
    return SSHD_BINARY.is_file() and os.access(SSHD_BINARY, os.X_OK)


def ensure_test_user(name: str = TEST_USER) -> str:
    """Create ``name`` with a home and /bin/sh if missing; make sure key logins work.

    With ``UsePAM no`` a locked account (``!`` password, what useradd leaves) is refused
    even for public keys, so the password field is set to ``*`` (no password, not locked).
    """
    try:
        pwd.getpwnam(name)
    except KeyError:
        result = subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", name], capture_output=True, text=True
        )
        if result.returncode not in (0, 9):  # 9: created meanwhile by someone else
            raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}") from None
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    run_dir = Path("/run/sshd")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)
    return name


def free_port(address: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def _shared_directory(prefix: str) -> Path:
    """A fresh directory the test user can traverse (pytest's tmp_path is root-only)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    return directory


def user_directory(prefix: str, user: str = TEST_USER) -> Path:
    """A fresh directory ``user`` owns: the sshd runs on this machine, so its remote paths are local paths."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    account = pwd.getpwnam(user)
    os.chown(directory, account.pw_uid, account.pw_gid)
    return directory


@dataclass(frozen=True)
class ClientKey:
    """The key pair the client authenticates with (listed in every instance's authorized_keys)."""

    private_path: Path
    public_path: Path
    public_line: str

    @classmethod
    def create(cls, directory: Path | None = None) -> ClientKey:
        directory = directory or _shared_directory("relay-client-key-")
        key = asyncssh.generate_private_key("ssh-ed25519", comment="relay-shell-test")
        private_path = directory / "id_ed25519"
        public_path = directory / "id_ed25519.pub"
        key.write_private_key(str(private_path))
        private_path.chmod(0o600)
        public_line = key.export_public_key("openssh").decode().strip()
        public_path.write_text(public_line + "\n")
        public_path.chmod(0o644)
        return cls(private_path, public_path, public_line)

    def remove(self) -> None:
        self.private_path.unlink(missing_ok=True)
        self.public_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.private_path.parent.rmdir()  # only if nothing else lives there


@dataclass
class SshdInstance:
    """One running sshd. Mutable: :meth:`restart` replaces the process (and maybe the key)."""

    address: str
    port: int
    user: str
    client_key: ClientKey
    workdir: Path
    host_key: asyncssh.SSHKey
    max_startups: str | None
    max_sessions: int | None
    extra_config: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.workdir / "sshd_config"

    @property
    def host_key_path(self) -> Path:
        return self.workdir / "ssh_host_ed25519_key"

    @property
    def log_path(self) -> Path:
        return self.workdir / "sshd.log"

    @property
    def fingerprint(self) -> str:
        return str(self.host_key.get_fingerprint("sha256"))

    def known_hosts_line(self) -> str:
        public = self.host_key.export_public_key("openssh").decode().split()
        name = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{name} {public[0]} {public[1]}\n"

    def target(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.user}@{host}:{self.port}"

    def _write_files(self) -> None:
        self.host_key.write_private_key(str(self.host_key_path))
        self.host_key_path.chmod(0o600)
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(self.client_key.public_line + "\n")
        authorized.chmod(0o644)
        # sshd keeps the first value it reads for most keywords: extra lines go first to win.
        lines = [
            *self.extra_config,
            f"ListenAddress {self.address}",
            f"Port {self.port}",
            f"HostKey {self.host_key_path}",
            "PidFile none",
            f"AuthorizedKeysFile {authorized}",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            f"AllowUsers {self.user}",
            "AllowTcpForwarding yes",
            "PrintMotd no",
            "UseDNS no",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
        ]
        if self.max_startups is not None:
            lines.append(f"MaxStartups {self.max_startups}")
        if self.max_sessions is not None:
            lines.append(f"MaxSessions {self.max_sessions}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _launch(self) -> None:
        self._write_files()
        check = subprocess.run(
            [str(SSHD_BINARY), "-t", "-f", str(self.config_path)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t rejected {self.config_path}: {check.stderr.strip()}")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(SSHD_BINARY), "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def _wait_listening(self, deadline: float) -> None:
        assert self.process is not None
        while not _is_listening(self.address, self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd not listening on {self.address}:{self.port} within the deadline")
            time.sleep(POLL_INTERVAL_S)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def restart(self, *, new_host_key: bool = False) -> None:
        """Stop, then start on the same address and port (with a fresh host key if asked)."""
        self.stop()
        if new_host_key:
            self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._launch()
        self._wait_listening(time.monotonic() + START_TIMEOUT_S)

    def stop(self) -> None:
        """Kill the listener and everything it forked (sessions, remote commands); wait for them."""
        process, self.process = self.process, None
        if process is None:
            return
        family = descendants(process.pid)
        for pid in [process.pid, *family]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_S)
        _wait_gone(family, time.monotonic() + STOP_TIMEOUT_S)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_sshd(
    client_key: ClientKey,
    *,
    address: str = "127.0.0.1",
    port: int | None = None,
    host_key: asyncssh.SSHKey | None = None,
    max_startups: str | None = "200:30:400",
    max_sessions: int | None = 100,
    extra_config: Sequence[str] = (),
    user: str = TEST_USER,
) -> SshdInstance:
    """Start one sshd and return once it listens. ``None`` limits keep OpenSSH's defaults."""
    [instance] = _start(
        client_key,
        [address],
        port=port,
        host_key=host_key,
        max_startups=max_startups,
        max_sessions=max_sessions,
        extra_config=extra_config,
        user=user,
    )
    return instance


def start_many(
    client_key: ClientKey,
    count: int,
    *,
    first_address: str = "127.0.0.2",
    max_startups: str | None = "200:30:400",
    max_sessions: int | None = 100,
    extra_config: Sequence[str] = (),
    user: str = TEST_USER,
) -> list[SshdInstance]:
    """Start ``count`` sshd instances, one per loopback address from ``first_address`` on."""
    first = IPv4Address(first_address)
    addresses = [str(first + offset) for offset in range(count)]
    if any(not IPv4Address(address).is_loopback for address in addresses):
        raise ValueError("every address must stay inside 127.0.0.0/8")
    return _start(
        client_key, addresses, port=None, host_key=None, max_startups=max_startups,
        max_sessions=max_sessions, extra_config=extra_config, user=user,
    )  # fmt: skip


def _start(
    client_key: ClientKey,
    addresses: Sequence[str],
    *,
    port: int | None,
    host_key: asyncssh.SSHKey | None,
    max_startups: str | None,
    max_sessions: int | None,
    extra_config: Sequence[str],
    user: str,
) -> list[SshdInstance]:
    ensure_test_user(user)
    instances = []
    try:
        for address in addresses:
            instance = SshdInstance(
                address=address,
                port=port or free_port(address),
                user=user,
                client_key=client_key,
                workdir=_shared_directory("relay-sshd-"),
                host_key=host_key or asyncssh.generate_private_key("ssh-ed25519"),
                max_startups=max_startups,
                max_sessions=max_sessions,
                extra_config=tuple(extra_config),
            )
            instances.append(instance)
            instance._launch()
        deadline = time.monotonic() + START_TIMEOUT_S
        for instance in instances:
            instance._wait_listening(deadline)
    except BaseException:
        stop_all(instances)
        raise
    return instances


def stop_all(instances: Iterable[SshdInstance]) -> None:
    for instance in instances:
        instance.remove()


def _is_listening(address: str, port: int) -> bool:
    """Read the kernel's socket table instead of connecting (a probe would count as a login attempt)."""
    table = "/proc/net/tcp6" if ":" in address else "/proc/net/tcp"
    wanted_port = f"{port:04X}"
    packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    if ":" in address:
        words = [packed[index : index + 4] for index in range(0, 16, 4)]
        wanted_address = "".join(word[::-1].hex().upper() for word in words)
    else:
        wanted_address = packed[::-1].hex().upper()
    with open(table) as sockets:
        next(sockets)
        for line in sockets:
            columns = line.split()
            local, state = columns[1], columns[3]
            local_address, local_port = local.split(":")
            if state == "0A" and local_port == wanted_port and local_address == wanted_address:
                return True
    return False


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    children = _children_map()
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _wait_gone(pids: Sequence[int], deadline: float) -> None:
    remaining = list(pids)
    while remaining and time.monotonic() < deadline:
        remaining = [pid for pid in remaining if _alive(pid)]
        if remaining:
            time.sleep(POLL_INTERVAL_S)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in ("Z", "X")
