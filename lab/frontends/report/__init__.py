"""Views of run records: terminal matrix, JSON, JUnit XML."""

from __future__ import annotations
