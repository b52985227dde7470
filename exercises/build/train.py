# The train: write it here from docs/build/train.md; `python -m exercises.check --track build train` checks it.
