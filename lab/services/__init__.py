"""The lab's real services: DNS, policy host, SMTP receiver, MITM proxy."""

from __future__ import annotations
