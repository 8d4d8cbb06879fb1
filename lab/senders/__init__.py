"""Adapters for senders under test (DESIGN §5)."""

from __future__ import annotations
