# The muon: write it here from docs/build/muon.md; `python -m exercises.check --track build muon` checks it.
