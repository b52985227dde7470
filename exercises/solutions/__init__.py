"""Worked solutions for the exercises (same function names and signatures as exercises/<name>.py)."""
