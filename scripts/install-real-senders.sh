#!/usr/bin/env bash
# Installs the real MTAs the lab tests (issue 4, docs/senders.md) without configuring the
# machine's own mail system. Idempotent and quiet: a second run changes nothing and prints
# nothing but errors. Needs root for apt; as a normal user it installs only the project-local
# parts (npm packages, the pip extra) and says what it skipped.
#   postfix                  Debian package, preseeded "No configuration": starts nothing
#   exim4 (unpacked)         apt-get download + dpkg -x into .real/exim: Debian's exim4
#                            conflicts with postfix as a mail-transport-agent
#   mx-connect, mailauth,    npm, into lab/senders/real/node/node_modules
#   nodemailer
#   postfix-mta-sts-resolver the project's pip extra `real`, into .venv
#   unbound (unpacked)       apt-get download + dpkg -x into .real/unbound (with
#                            libprotobuf-c1): the validating resolver of the DANE senders;
#                            installing the package would start a resolver on the machine
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-.venv}
EXIM_DIR=$ROOT/.real/exim
UNBOUND_DIR=$ROOT/.real/unbound
export DEBIAN_FRONTEND=noninteractive

say() { echo "install-real-senders: $*" >&2; }

quiet() {  # run "$@" silently; on failure show what it printed
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    say "failed: $*"
    return 1
  fi
  rm -f "$log"
}

apt_ready=
apt_update() {
  # One `apt-get update` per run, and only when something is missing.
  [ -n "$apt_ready" ] && return
  quiet apt-get update -qq
  apt_ready=1
}

need_pkgs() {  # the packages among "$@" that are not installed
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # Postfix: "No configuration" writes no main.cf and starts no daemon; the lab runs private
  # instances with `postfix -c DIR`.
  pkgs="postfix uidmap iproute2 libidn12 libgnutls-dane0"
  command -v npm >/dev/null || pkgs="$pkgs nodejs npm"
  # shellcheck disable=SC2086 # one package per word
  missing=$(need_pkgs $pkgs)
  if [ -n "$missing" ]; then
    apt_update
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string lab.invalid" | debconf-set-selections
    # shellcheck disable=SC2086
    quiet apt-get install -y -qq --no-install-recommends $missing
  fi
  # Exim: unpacked, never installed (it would replace postfix).
  if [ ! -x "$EXIM_DIR/usr/sbin/exim4" ]; then
    apt_update
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && quiet apt-get download -qq exim4-daemon-light exim4-base exim4-config)
    rm -rf "$EXIM_DIR.new" && mkdir -p "$EXIM_DIR.new"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$EXIM_DIR.new"; done
    rm -rf "$EXIM_DIR" && mv "$EXIM_DIR.new" "$EXIM_DIR"
  fi
  # unbound: unpacked, never installed (issue 16: the DANE senders' validating resolver).
  if [ ! -x "$UNBOUND_DIR/usr/sbin/unbound" ]; then
    apt_update
    utmp=$(mktemp -d)
    (cd "$utmp" && quiet apt-get download -qq unbound libprotobuf-c1)
    rm -rf "$UNBOUND_DIR.new" && mkdir -p "$UNBOUND_DIR.new"
    for deb in "$utmp"/*.deb; do dpkg -x "$deb" "$UNBOUND_DIR.new"; done
    rm -rf "$utmp" "$UNBOUND_DIR" && mv "$UNBOUND_DIR.new" "$UNBOUND_DIR"
  fi
  # The exim binary refuses to run without its system user.
  if ! getent passwd Debian-exim >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin Debian-exim
  fi
else
  say "not root: skipping postfix, exim and uidmap (Debian packages); run as root to install them"
fi

# Node: the mailauth driver's own dependencies, project-local.
if command -v npm >/dev/null; then
  node_dir=lab/senders/real/node
  if [ ! -d "$node_dir/node_modules/mx-connect" ] || [ ! -d "$node_dir/node_modules/nodemailer" ] \
     || [ "$node_dir/package.json" -nt "$node_dir/node_modules" ]; then
    quiet npm install --prefix "$node_dir" --no-audit --no-fund --loglevel=error --omit=dev
    touch "$node_dir/node_modules"
  fi
else
  say "npm not found: the mailauth sender stays unavailable"
fi

# Python: the project's venv with the `real` extra (postfix-mta-sts-resolver).
if [ ! -x "$VENV/bin/python" ]; then
  quiet make -s setup
fi
if ! "$VENV/bin/python" -c 'import postfix_mta_sts_resolver' 2>/dev/null; then
  quiet "$VENV/bin/pip" install -q -e '.[test,real]'
fi
