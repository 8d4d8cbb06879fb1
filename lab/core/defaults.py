"""Defaults the faces share (not test helpers): the world a live lab or a hand-written test
gets when nobody names a scenario."""

from __future__ import annotations

# A healthy domain that publishes an enforce policy, and one honest delivery: the `lab_scenario`
# fixture's default and `downgrade-lab up` without --scenario.
DEFAULT_SCENARIO = """\
title = "healthy domain, enforce policy"
[policy]
mode = "enforce"

[[step]]
expect = "delivered-tls"
"""
