"""Test-wide settings."""

from __future__ import annotations

import os

from hypothesis import settings

# In CI the property tests run the same examples every time, so that main stays
# green or red for a reason; locally they explore new examples on every run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
