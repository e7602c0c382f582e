#!/usr/bin/env bash
# Install the Caddy TLS edge for relay-shell: render deploy/Caddyfile with the values below,
# validate it with `caddy validate`, install it as /etc/caddy/Caddyfile and reload Caddy.
#
#   sudo RELAY_SHELL_EDGE_DOMAIN=relay.example.com RELAY_SHELL_EDGE_EMAIL=ops@example.com \
#        RELAY_SHELL_EDGE_ALLOWED_CIDRS="203.0.113.0/24 2001:db8::/48" deploy/install-edge.sh
#   deploy/install-edge.sh --prefix DIR --no-system
#
# Required: RELAY_SHELL_EDGE_DOMAIN (public DNS name), RELAY_SHELL_EDGE_EMAIL (ACME account),
# RELAY_SHELL_EDGE_ALLOWED_CIDRS (client networks, space- or comma-separated). Optional:
# RELAY_SHELL_EDGE_UPSTREAM (default 127.0.0.1:8080).
#
# An invalid configuration is never installed nor reloaded: validation runs on the rendered
# file first, and a failure leaves the current Caddyfile and Caddy untouched. The values are
# recorded in /etc/relay-shell/edge.env, which `relay-shell --verify-deploy` re-renders the
# template from. Idempotent; a different previous Caddyfile is kept under /var/backups/relay-shell/.
#
# --prefix DIR: write under DIR instead of / (a staging root).
# --no-system: no `systemctl reload caddy`; validation still runs when caddy is installed.
set -euo pipefail
umask 022
# shellcheck source=install-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/install-common.sh"

values_path=/etc/relay-shell/edge.env
edge_names=(RELAY_SHELL_EDGE_DOMAIN RELAY_SHELL_EDGE_EMAIL RELAY_SHELL_EDGE_ALLOWED_CIDRS RELAY_SHELL_EDGE_UPSTREAM)
default_upstream=127.0.0.1:8080

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
  -h | --help)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument: $1 (see --help)" ;;
  esac
done

# Check and normalise the values; every problem is reported before exiting.
check_values() {
  local problems=() name cidr label='[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
  for name in RELAY_SHELL_EDGE_DOMAIN RELAY_SHELL_EDGE_EMAIL RELAY_SHELL_EDGE_ALLOWED_CIDRS; do
    [ -n "${!name:-}" ] || problems+=("$name is required")
  done
  if [ -n "${RELAY_SHELL_EDGE_DOMAIN:-}" ] && ! [[ "$RELAY_SHELL_EDGE_DOMAIN" =~ ^$label(\.$label)+$ ]]; then
    problems+=("RELAY_SHELL_EDGE_DOMAIN must be a DNS name like relay.example.com")
  fi
  if [ -n "${RELAY_SHELL_EDGE_EMAIL:-}" ] && ! [[ "$RELAY_SHELL_EDGE_EMAIL" =~ ^[A-Za-z0-9._%+-]+@$label(\.$label)+$ ]]; then
    problems+=("RELAY_SHELL_EDGE_EMAIL must be an e-mail address")
  fi
  RELAY_SHELL_EDGE_ALLOWED_CIDRS=$(printf '%s' "${RELAY_SHELL_EDGE_ALLOWED_CIDRS:-}" | tr ',\t\n' '   ' | tr -s ' ' | sed 's/^ //; s/ $//')
  for cidr in $RELAY_SHELL_EDGE_ALLOWED_CIDRS; do
    [[ "$cidr" =~ ^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$ ]] ||
      problems+=("RELAY_SHELL_EDGE_ALLOWED_CIDRS: '$cidr' is not an IP address or CIDR")
    case "$cidr" in 0.0.0.0/0 | ::/0) say "warning: $cidr admits every client: OAuth is then the only gate" ;; esac
  done
  RELAY_SHELL_EDGE_UPSTREAM=${RELAY_SHELL_EDGE_UPSTREAM:-$default_upstream}
  [[ "$RELAY_SHELL_EDGE_UPSTREAM" =~ ^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$ ]] ||
    problems+=("RELAY_SHELL_EDGE_UPSTREAM must be host:port, e.g. 127.0.0.1:8080")
  if [ ${#problems[@]} -gt 0 ]; then
    printf "${0##*/}: %s\n" "${problems[@]}" >&2
    exit 1
  fi
  export "${edge_names[@]}"
}

# Substitute {$RELAY_SHELL_EDGE_*} and {$RELAY_SHELL_EDGE_*:default} placeholders from the
# environment (an empty value takes the default). Other text is copied unchanged.
# relay_shell.deploy_check renders the same way to compare.
render() {
  awk '{
    line = $0; out = ""
    while ((start = index(line, "{$")) > 0) {
      rest = substr(line, start + 2)
      close_at = index(rest, "}")
      if (close_at == 0) break
      inner = substr(rest, 1, close_at - 1)
      name = inner; fallback = ""
      colon = index(inner, ":")
      if (colon > 0) { name = substr(inner, 1, colon - 1); fallback = substr(inner, colon + 1) }
      if (name ~ /^RELAY_SHELL_EDGE_[A-Z0-9_]+$/) {
        value = ENVIRON[name]
        if (value == "") value = fallback
        out = out substr(line, 1, start - 1) value
      } else {
        out = out substr(line, 1, start + 1 + close_at)
      }
      line = substr(rest, close_at + 1)
    }
    print out line
  }' "$1"
}

# caddy validate FILE; prints Caddy's own messages on failure.
validate() {
  local output
  if ! command -v caddy >/dev/null; then
    [ "$system" = 1 ] && die "caddy is not installed (apt-get install caddy)"
    say "caddy is not installed: the rendered file was not validated"
    return 0
  fi
  if ! output=$(caddy validate --config "$1" --adapter caddyfile 2>&1); then
    printf '%s\n' "$output" >&2
    die "caddy validate rejected the rendered Caddyfile: nothing installed, Caddy not reloaded"
  fi
  say "caddy validate: valid configuration"
}

write_values() {
  local name
  {
    echo "# The values install-edge.sh rendered /etc/caddy/Caddyfile with (read by relay-shell --verify-deploy)."
    echo "# Re-apply after editing: set -a; . $values_path; set +a; deploy/install-edge.sh"
    for name in "${edge_names[@]}"; do
      printf '%s="%s"\n' "$name" "${!name}"
    done
  } >"$work/values"
  make_dir /etc/relay-shell 0750
  install_file "$work/values" "$(target "$values_path")" 0644
}

reload_caddy() {
  if [ "$system" = 0 ]; then
    say "--no-system: Caddy not reloaded"
  elif systemctl is-active --quiet caddy; then
    systemctl reload caddy
    say "systemctl reload caddy done"
  else
    say "caddy is not running: start it with 'systemctl enable --now caddy'"
  fi
}

check_values
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
IFS=$'\t' read -r template install_path < <(manifest_entries install-edge.sh)
render "$deploy_dir/$template" >"$work/body"
# shellcheck disable=SC2016  # a literal placeholder, not an expansion
if grep -qF '{$RELAY_SHELL_EDGE_' "$work/body"; then
  die "the rendered Caddyfile still has placeholders"
fi
with_marker "$template" "$work/rendered" "$work/body"
validate "$work/rendered"
install_file "$work/rendered" "$(target "$install_path")" 0644
write_values
reload_caddy
