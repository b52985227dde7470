# The hellaswag: write it here from docs/build/hellaswag.md; `python -m exercises.check --track build hellaswag` checks it.
