# shellcheck shell=bash
# Shared by install.sh and install-edge.sh (sourced, not run). Bash.
#
# Every installed template starts with one marker line,
#   # installed by relay-shell <version> from <template>
# which `relay-shell --verify-deploy` recognises and leaves out of the comparison.
# With --prefix DIR every path is written under DIR (a staging root, like DESTDIR).

deploy_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$deploy_dir/.." && pwd)
prefix=""
system=1
backup_stamp=$(date -u +%Y%m%dT%H%M%SZ)

die() {
  echo "${0##*/}: $*" >&2
  exit 1
}

say() {
  echo "${0##*/}: $*"
}

# set_prefix DIR: stage every file under DIR (absolute; "/" means the real root).
set_prefix() {
  [ -n "$1" ] || die "--prefix needs a directory"
  prefix=$(realpath -m -- "$1")
  [ "$prefix" = / ] && prefix=""
  return 0
}

# The path where an absolute install path lands (under --prefix when given).
target() {
  printf '%s%s' "$prefix" "$1"
}

# The relay-shell version: from the source tree's pyproject.toml, else the installed package.
relay_version() {
  local version=""
  if [ -f "$source_dir/pyproject.toml" ]; then
    version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$source_dir/pyproject.toml" | head -n 1)
  fi
  if [ -z "$version" ] && [ -x /opt/relay-shell/venv/bin/python ]; then
    version=$(/opt/relay-shell/venv/bin/python -c 'import importlib.metadata as m; print(m.version("relay-shell"))' 2>/dev/null || true)
  fi
  printf '%s' "${version:-unknown}"
}

# Print "template<TAB>install path" for each manifest entry installed by $1.
manifest_entries() {
  local installer=$1 name template install_path by
  while IFS=$'\t' read -r name template install_path by; do
    case "$name" in '' | '#'*) continue ;; esac
    [ "$by" = "$installer" ] && printf '%s\t%s\n' "$template" "$install_path"
  done <"$deploy_dir/manifest.tsv"
}

# make_dir PATH MODE [OWNER:GROUP]: create PATH (under the prefix) with MODE; chown in system mode.
make_dir() {
  local path
  path=$(target "$1")
  mkdir -p -- "$path"
  chmod "$2" -- "$path"
  if [ "$system" = 1 ] && [ -n "${3:-}" ]; then
    chown "$3" -- "$path"
  fi
}

# Copy an existing file that is about to be replaced by different content to
# <prefix>/var/backups/relay-shell/<stamp>/<path>, outside any directory a daemon reads.
backup_if_different() {
  local destination=$1 new_content=$2 backup
  [ -f "$destination" ] || return 0
  cmp -s -- "$destination" "$new_content" && return 0
  # Only the marker line (the version) differs: nothing of the operator's to keep.
  if head -n 1 -- "$destination" | grep -q '^# installed by relay-shell ' &&
    cmp -s <(tail -n +2 -- "$destination") <(tail -n +2 -- "$new_content"); then
    return 0
  fi
  backup="$(target /var/backups/relay-shell)/$backup_stamp${destination#"$prefix"}"
  mkdir -p -- "$(dirname -- "$backup")"
  chmod 0700 -- "$(target /var/backups/relay-shell)"
  cp -p -- "$destination" "$backup"
  say "kept the previous $destination as $backup"
}

# install_file CONTENT DESTINATION MODE: atomically replace DESTINATION (a prefixed path) with
# the file CONTENT, backing up a different previous version, and say what happened.
install_file() {
  local content=$1 destination=$2 mode=$3 staged
  mkdir -p -- "$(dirname -- "$destination")"
  if [ -f "$destination" ] && cmp -s -- "$destination" "$content"; then
    chmod "$mode" -- "$destination"
    say "unchanged $destination"
    return 0
  fi
  backup_if_different "$destination" "$content"
  staged=$(mktemp "$(dirname -- "$destination")/.relay-shell.XXXXXX")
  cat -- "$content" >"$staged"
  chmod "$mode" -- "$staged"
  mv -f -- "$staged" "$destination"
  say "installed $destination"
}

# with_marker TEMPLATE_RELATIVE OUTPUT [SOURCE]: write the marker line then SOURCE
# (default: the template itself) to OUTPUT.
with_marker() {
  local template=$1 output=$2 source=${3:-"$deploy_dir/$1"}
  {
    printf '# installed by relay-shell %s from %s\n' "$(relay_version)" "$template"
    cat -- "$source"
  } >"$output"
}
