"""The build track's expectations computed from the lessons (02, 05, 06) on cases drawn from a seed: the
repo's checks call these now (fresh cases every run); exercises/handout.py calls them once and stores the result
(build_cases.py). Never part of a handout: it imports the lessons.
"""
from __future__ import annotations

MAKERS = {}
