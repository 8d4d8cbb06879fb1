"""The pure core: every decision of the lab, no I/O (tests/test_architecture.py checks it)."""
