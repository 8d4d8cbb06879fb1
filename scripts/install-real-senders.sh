#!/usr/bin/env bash
# Installs the real MTAs the lab tests (issue 4, docs/senders.md) without configuring the
# machine's own mail system. Idempotent and quiet: a second run changes nothing and prints
# nothing but errors. Needs root for apt; as a normal user it installs only the per-user parts
# (npm packages, the Python package) and says what it skipped.
#   postfix                  Debian package, preseeded "No configuration": starts nothing
#   exim4 (unpacked)         apt-get download + dpkg -x into $DATA/exim: Debian's exim4
#                            conflicts with postfix as a mail-transport-agent
#   opensmtpd (unpacked)     the same into $DATA/opensmtpd, for the `opensmtpd` profile
#                            (lab/senders/profiles/opensmtpd.toml); its users, its compiled-in
#                            spool and chroot folders, smtpctl setgid opensmtpq
#   mx-connect, mailauth,    npm, into $DATA/node/node_modules, next to the mailauth driver
#   nodemailer               (copied there from the package: Node resolves from the script)
#   unbound (unpacked)       apt-get download + dpkg -x into $DATA/unbound (with
#                            libprotobuf-c1): the validating resolver of the DANE senders;
#                            installing the package would start a resolver on the machine
#   postfix-mta-sts-resolver pip: into the project's .venv (checkout), or the environment of
#                            $DOWNGRADE_LAB_PYTHON (`downgrade-lab setup-senders`)
# $DATA, the per-user data folder, never site-packages: $DOWNGRADE_LAB_DATA, else
# $XDG_DATA_HOME/downgrade-lab, else ~/.local/share/downgrade-lab (lab/senders/real/datadir.py
# computes the same; `downgrade-lab setup-senders` passes it).
# Run from a checkout (`make real-setup`, `.ci/run`) or by `downgrade-lab setup-senders`, which
# ships this script inside the package.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "${DOWNGRADE_LAB_PYTHON:-}" ] && [ -f "$HERE/../pyproject.toml" ] && [ -d "$HERE/../lab" ]; then
  CHECKOUT=$(cd "$HERE/.." && pwd)  # scripts/ of a checkout
  NODE_SRC=$CHECKOUT/lab/senders/real/node
else
  CHECKOUT=
  NODE_SRC=${DOWNGRADE_LAB_NODE_SOURCE:-$HERE/node}
fi
if [ -n "${DOWNGRADE_LAB_DATA:-}" ]; then
  DATA=$DOWNGRADE_LAB_DATA
elif [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] && [ "$(id -u)" = 0 ]; then
  DATA=$(getent passwd "$SUDO_USER" | cut -d: -f6)/.local/share/downgrade-lab
elif [ -n "${XDG_DATA_HOME:-}" ] && [ "${XDG_DATA_HOME#/}" != "$XDG_DATA_HOME" ]; then
  DATA=$XDG_DATA_HOME/downgrade-lab
else
  DATA=$HOME/.local/share/downgrade-lab
fi
EXIM_DIR=$DATA/exim
NODE_DIR=$DATA/node
OPENSMTPD_DIR=$DATA/opensmtpd
UNBOUND_DIR=$DATA/unbound
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$DATA"

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
  pkgs="postfix uidmap iproute2 libidn12 libgnutls-dane0 libevent-2.1-7 libdb5.3"
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
  # OpenSMTPD: unpacked too (it also conflicts with postfix). Debian's build runs as the
  # opensmtpd and opensmtpq users (not OpenBSD's _smtpd/_smtpq), chroots into
  # /var/lib/opensmtpd/empty and has /var/spool/smtpd compiled in: the profile bind-mounts a
  # private queue over that folder inside the lab's namespace, so it only has to exist here.
  if [ ! -x "$OPENSMTPD_DIR/usr/sbin/smtpd" ]; then
    apt_update
    tmp_o=$(mktemp -d)
    (cd "$tmp_o" && quiet apt-get download -qq opensmtpd)
    rm -rf "$OPENSMTPD_DIR.new" && mkdir -p "$OPENSMTPD_DIR.new"
    for deb in "$tmp_o"/*.deb; do dpkg -x "$deb" "$OPENSMTPD_DIR.new"; done
    rm -rf "$tmp_o"
    rm -rf "$OPENSMTPD_DIR" && mv "$OPENSMTPD_DIR.new" "$OPENSMTPD_DIR"
  fi
  for u in opensmtpd opensmtpq; do
    getent group "$u" >/dev/null || groupadd --system "$u"
    getent passwd "$u" >/dev/null || useradd --system --gid "$u" --no-create-home \
      --home-dir /var/lib/opensmtpd/empty --shell /usr/sbin/nologin "$u"
  done
  mkdir -p /var/lib/opensmtpd/empty /var/spool/smtpd
  # smtpctl talks to smtpd only when it is setgid opensmtpq (Debian's postinst does this)
  smtpctl=$OPENSMTPD_DIR/usr/sbin/smtpctl
  if [ "$(stat -c %G:%a "$smtpctl")" != "opensmtpq:2555" ]; then
    chgrp opensmtpq "$smtpctl" && chmod 2555 "$smtpctl"
  fi
else
  say "not root: skipping postfix, exim, opensmtpd and uidmap (Debian packages); run as root to install them"
fi

# Node: the mailauth driver and its own dependencies, in the data folder.
if command -v npm >/dev/null; then
  mkdir -p "$NODE_DIR"
  for f in package.json package-lock.json mailauth-send.mjs; do
    cmp -s "$NODE_SRC/$f" "$NODE_DIR/$f" || cp "$NODE_SRC/$f" "$NODE_DIR/$f"
  done
  if [ ! -d "$NODE_DIR/node_modules/mx-connect" ] || [ ! -d "$NODE_DIR/node_modules/nodemailer" ] \
     || [ "$NODE_DIR/package.json" -nt "$NODE_DIR/node_modules" ]; then
    quiet npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error --omit=dev
    touch "$NODE_DIR/node_modules"
  fi
else
  say "npm not found: the mailauth sender stays unavailable"
fi

# Python: postfix-mta-sts-resolver (the project's `real` extra).
if [ -n "$CHECKOUT" ]; then
  cd "$CHECKOUT"
  VENV=${VENV:-.venv}
  if [ ! -x "$VENV/bin/python" ]; then
    quiet make -s setup
  fi
  if ! "$VENV/bin/python" -c 'import postfix_mta_sts_resolver' 2>/dev/null; then
    quiet "$VENV/bin/pip" install -q -e '.[test,real]'
  fi
else
  PY=${DOWNGRADE_LAB_PYTHON:-python3}
  if ! "$PY" -c 'import postfix_mta_sts_resolver' 2>/dev/null; then
    quiet "$PY" -m pip install -q 'postfix-mta-sts-resolver>=1.5.1' \
      || say "the postfix-mta-sts senders need: pip install 'downgrade-lab[real]'"
  fi
fi
