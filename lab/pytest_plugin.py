"""pytest plugin (entry point pytest11): options and fixtures for CI suites; see DESIGN §8."""

from __future__ import annotations
