"""Downgrade Lab: simulate STARTTLS downgrade attacks and judge whether SMTP senders honour MTA-STS."""

from __future__ import annotations

__version__ = "0.2.0"
