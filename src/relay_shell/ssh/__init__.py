"""SSH over asyncssh (docs/tools.md). Knows nothing of MCP; nothing above it sees an asyncssh type.

Modules, in dependency order::

    targets    parse/validate ``user@host:port``; ConnectOverrides, HostSpec, split_hosts
    sshconfig  the ssh_config subset that routes connections (Host, HostName, User, Port, ...)
    inventory  Inventory: ssh_config aliases + JSON inventory -> HostSpec
    translate  asyncssh/socket errors -> RemoteUnreachable reasons
    hostkeys   known_hosts file, strict / accept-new / ignore verification
    wire       coalesce_packet_writes: one socket write per packet (with asyncssh's IGNORE)
    connect    Dialer: one connection (+ jump chain) under a deadline, MaxStartups retry
    pool       ConnectionPool, Lease, PoolStats
    remote_exec  run_remote -> ExecReport (bounded, stopped on timeout/cancel); exec_command_line
    hostpatterns  host patterns (aliases, globs, @tags, & and !, failed:<fanout_id>) -> names; pure
    fleet      Rollout (batches, max_fail, canary), run_rollout, FanoutHistory; pure
    fleet_report  the text of a multi-host result within a byte budget; pure
    selection  host patterns against the Inventory and the fan-out history
    check      check_hosts -> CheckResult (pooled round trip or fresh dial, no host key recorded)
    fanout     run_fanout -> FanoutReport of FanoutHostResult, group_identical
    keyscan    keyscan -> ScannedKey
    socks      the server side of a SOCKS5 CONNECT handshake (for D forwards)
    forward_spec  forward specs (L/R/D) and ForwardInfo, the row a forward reports; pure
    pty, sftp, forwards   remote PTY sessions, transfers and port forwards on pinned leases
"""
