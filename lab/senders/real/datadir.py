"""Where the real senders' own software lives: a per-user data folder, never site-packages.

`downgrade-lab setup-senders` (and `make real-setup` in a checkout) runs the packaged
install-real-senders.sh, which unpacks Exim into `<data>/exim` and installs the mailauth
driver with its npm packages into `<data>/node`; the adapters look there. The folder is
`$DOWNGRADE_LAB_DATA`, else `$XDG_DATA_HOME/downgrade-lab`, else
`~/.local/share/downgrade-lab` (the XDG base directory default). Under `sudo` it is the
invoking user's (`sudo downgrade-lab setup-senders`, then `sudo downgrade-lab run --isolate`
or a run without sudo all find the same folder).
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import IO

DATA_VAR = "DOWNGRADE_LAB_DATA"
HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "install-real-senders.sh"  # in a checkout, a link to scripts/
NODE_SOURCE = HERE / "node"  # the driver and its package.json, copied into <data>/node


def data_dir() -> Path:
    """The per-user data folder (see the module docstring)."""
    explicit = os.environ.get(DATA_VAR)
    if explicit:
        return Path(explicit)
    user = _invoking_user()
    if user is not None:  # sudo: root's environment, the user's folder
        return Path(user.pw_dir) / ".local" / "share" / "downgrade-lab"
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):  # the spec: a relative value is ignored
        return Path(xdg) / "downgrade-lab"
    return Path(os.path.expanduser("~")) / ".local" / "share" / "downgrade-lab"


def _invoking_user() -> pwd.struct_passwd | None:
    """Under `sudo`, the user who asked: the data folder is theirs, not root's."""
    name = os.environ.get("SUDO_USER")
    if os.geteuid() != 0 or not name or name == "root" or os.environ.get(DATA_VAR):
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def setup_senders(log: IO[str]) -> int:
    """Run the install script for this interpreter and the per-user data folder; its exit
    status. Root installs the Debian parts (postfix, uidmap, Exim's packages)."""
    user = _invoking_user()
    target = data_dir()
    env = dict(os.environ, DOWNGRADE_LAB_DATA=str(target), DOWNGRADE_LAB_PYTHON=sys.executable,
               DOWNGRADE_LAB_NODE_SOURCE=str(NODE_SOURCE))
    log.write(f"downgrade-lab: installing the real senders into {target}\n")
    log.flush()
    code = subprocess.run(["bash", str(SCRIPT)], env=env, check=False).returncode
    if user is not None and target.is_dir():  # sudo: hand the folder to its owner
        for folder, dirs, files in os.walk(target):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.lchown(name, user.pw_uid, user.pw_gid)
    if code == 0:
        log.write("downgrade-lab: done; `downgrade-lab senders` shows which can run here\n")
    return code
