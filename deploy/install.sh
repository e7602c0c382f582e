#!/usr/bin/env bash
# Install relay-shell as a systemd service on this host.
#
#   sudo deploy/install.sh [--python PYTHON]
#   deploy/install.sh --prefix DIR --no-system
#
# System mode (the default; run as root from a source checkout): creates the service user
# relay-shell, the virtualenv /opt/relay-shell/venv with relay-shell from this tree (versions
# pinned by requirements.txt), the directories with their modes, the unit and its hardening
# drop-in, the logrotate policy and, only when absent, /etc/relay-shell/relay-shell.env from
# .env.example (HTTP on 127.0.0.1:8080); then runs `systemctl daemon-reload`. It never starts
# or enables the service: it prints the command. Idempotent: running it again converges; a
# template file changed locally is replaced and the previous version kept under
# /var/backups/relay-shell/. Local changes belong in other drop-ins (systemctl edit).
#
# --prefix DIR --no-system: write the same files and directories under DIR only (no user,
# no pip, no chown, no chattr, no systemctl): for staging and tests.
# --python PYTHON: the Python >= 3.12 that creates the virtualenv (default: python3).
set -euo pipefail
umask 022
# shellcheck source=install-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/install-common.sh"

service_user=relay-shell
venv=/opt/relay-shell/venv
env_path=/etc/relay-shell/relay-shell.env
audit_path=/var/log/relay-shell/audit.jsonl
python=${PYTHON:-python3}

while [ $# -gt 0 ]; do
  case "$1" in
  --prefix)
    set_prefix "${2:-}"
    shift 2
    ;;
  --no-system)
    system=0
    shift
    ;;
  --python)
    [ -n "${2:-}" ] || die "--python needs an interpreter"
    python=$2
    shift 2
    ;;
  -h | --help)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument: $1 (see --help)" ;;
  esac
done
if [ "$system" = 1 ]; then
  [ -z "$prefix" ] || die "--prefix stages files only: use it with --no-system"
  [ "$(id -u)" = 0 ] || die "run as root (or stage the files with --prefix DIR --no-system)"
fi
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

ensure_user() {
  if getent passwd "$service_user" >/dev/null; then
    say "service user $service_user exists"
    return 0
  fi
  # A login shell, because PTY sessions start the user's shell; no password, no SSH keys.
  useradd --system --user-group --home-dir /var/lib/relay-shell --no-create-home \
    --shell /bin/bash --comment "relay-shell MCP server" "$service_user"
  say "created service user $service_user"
}

ensure_directories() {
  make_dir /etc/relay-shell 0750 "root:$service_user"
  make_dir /var/lib/relay-shell 0750 "$service_user:$service_user"
  make_dir /var/lib/relay-shell/.ssh 0700 "$service_user:$service_user"
  make_dir /var/lib/relay-shell/oauth 0700 "$service_user:$service_user"
  # root-owned: the service can append to its audit file but not rename, delete or replace it
  # (nor plant a symlink at its path); logrotate (root) creates each new file.
  make_dir /var/log/relay-shell 0750 "root:$service_user"
}

ensure_venv() {
  local constraints=()
  if [ ! -x "$venv/bin/python" ]; then
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null ||
      die "$python is not Python >= 3.12 (choose one with --python)"
    mkdir -p -- "$(dirname -- "$venv")"
    "$python" -m venv "$venv"
    say "created $venv"
  fi
  "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' ||
    die "$venv is not Python >= 3.12: remove it and run again with --python"
  [ -f "$source_dir/requirements.txt" ] && constraints=(--constraint "$source_dir/requirements.txt")
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${constraints[@]}" "${source_dir}[http]"
  # The venv links to its base interpreter: one under /root (pyenv) is not usable by the service.
  runuser -u "$service_user" -- "$venv/bin/relay-shell" --version >/dev/null ||
    die "the $service_user user cannot run $venv/bin/relay-shell: create the venv from a system-wide Python (--python)"
  say "relay-shell $(relay_version) installed in $venv"
}

install_templates() {
  local template install_path
  while IFS=$'\t' read -r template install_path; do
    with_marker "$template" "$work/rendered"
    install_file "$work/rendered" "$(target "$install_path")" 0644
  done < <(manifest_entries install.sh)
}

# set_key FILE KEY VALUE: make FILE say KEY=VALUE (replacing the line, or appending it).
set_key() {
  if grep -q "^$2=" "$1"; then
    sed -i "s|^$2=.*|$2=$3|" "$1"
  else
    printf '%s=%s\n' "$2" "$3" >>"$1"
  fi
}

# The service's settings file, created once from .env.example; never overwritten.
ensure_env_file() {
  local destination
  destination=$(target "$env_path")
  if [ -e "$destination" ]; then
    say "kept $destination (existing settings are never overwritten)"
    return 0
  fi
  [ -f "$source_dir/.env.example" ] || die "no $source_dir/.env.example to create $destination from"
  {
    echo "# relay-shell service settings, created by install.sh from .env.example."
    echo "# The service serves streamable HTTP on loopback; the TLS edge (deploy/Caddyfile) fronts it."
    cat -- "$source_dir/.env.example"
  } >"$work/env"
  set_key "$work/env" RELAY_SHELL_TRANSPORT http
  set_key "$work/env" RELAY_SHELL_HTTP_HOST 127.0.0.1
  set_key "$work/env" RELAY_SHELL_HTTP_PORT 8080
  set_key "$work/env" RELAY_SHELL_AUDIT_PATH "$audit_path"
  install -m 0640 -- "$work/env" "$destination"
  [ "$system" = 1 ] && chown "root:$service_user" -- "$destination"
  say "created $destination"
}

# An empty audit file, 0600, append-only where the filesystem supports it (logrotate keeps
# the attribute on each new file). An existing file is the audit trail: left alone.
ensure_audit_file() {
  local audit
  audit=$(target "$audit_path")
  [ -e "$audit" ] && return 0
  install -m 0600 /dev/null "$audit"
  [ "$system" = 1 ] || return 0
  chown "$service_user:$service_user" -- "$audit"
  if chattr +a -- "$audit" 2>/dev/null; then
    say "created $audit (append-only: chattr +a)"
  else
    say "created $audit (this filesystem does not support chattr +a)"
  fi
}

reload_systemd() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload
    say "systemctl daemon-reload done"
  else
    say "systemd is not running here: run 'systemctl daemon-reload' on the target host"
  fi
}

[ "$system" = 1 ] && ensure_user
ensure_directories
install_templates
ensure_env_file
ensure_audit_file
if [ "$system" = 1 ]; then
  ensure_venv
  reload_systemd
  "$venv/bin/relay-shell" --verify-deploy || say "warning: --verify-deploy reports differences (see above)"
  say "not started. Review $env_path, then: systemctl enable --now relay-shell"
else
  say "files staged under ${prefix:-/} (no user, venv, chown or systemctl in --no-system mode)"
fi
