"""`python -m downgrade_lab` is the `downgrade-lab` command."""

from __future__ import annotations

import sys

from .frontends.launch import entry

sys.exit(entry())
