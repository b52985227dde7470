"""Self-checking exercises: one small function per concept, checked against the numbered lessons.

Edit exercises/<name>.py, then run `python -m exercises.check <name>` from the repo root.
See exercises/README.md for the list."""
