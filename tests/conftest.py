"""Hypothesis profiles. `make fuzz` runs the hostile-input tests under `fuzz`: many more
examples, no deadline. Tests that set their own `max_examples` keep it under any profile."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")),
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
