# The tokenizer: write it here from docs/build/tokenizer.md; `python -m exercises.check --track build tokenizer` checks it.
