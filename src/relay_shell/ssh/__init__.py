"""SSH over asyncssh (docs/tools.md). Knows nothing of MCP; nothing above it sees an asyncssh type.

Modules, in dependency order::

    targets    parse/validate ``user@host:port``; ConnectOverrides, HostSpec, split_hosts
    sshconfig  the ssh_config subset that routes connections (Host, HostName, User, Port, ...)
    inventory  Inventory: ssh_config aliases + JSON inventory -> HostSpec
    translate  asyncssh/socket errors -> RemoteUnreachable reasons
    hostkeys   known_hosts file, strict / accept-new / ignore verification
    connect    Dialer: one connection (+ jump chain) under a deadline, MaxStartups retry
    pool       ConnectionPool, Lease, PoolStats
    remote_exec  run_remote -> ExecReport (bounded, stopped on timeout/cancel)
    check      check_hosts -> CheckResult
    fanout     fanout -> FanoutHostResult, group_identical
    keyscan    keyscan -> ScannedKey
    socks      the server side of a SOCKS5 CONNECT handshake (for D forwards)
    pty, sftp, forwards   remote PTY sessions, transfers and port forwards on pinned leases
"""
