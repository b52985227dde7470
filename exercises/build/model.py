# The model: write it here from docs/build/model.md; `python -m exercises.check --track build model` checks it.
