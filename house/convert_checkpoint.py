"""python -m house.convert_checkpoint OLD [NEW]: a 05 latest.pt of the older format, rewritten as 05 writes it now.

Every loader in this repo reads a .pt with torch.load(weights_only=True): tensors and plain values, never an object
whose unpickling could run code. 05's checkpoints written before that (commit 510e243 and earlier) kept numpy's RNG
state as a pickled numpy array, so they are refused, with this command named. It reads such a file allowing numpy's
array and dtype and nothing else (torch's weights-only loader, numpy's types allow-listed: a file that holds any
other object is refused, its code never runs), turns every array into a list (what 05 saves now: house.runs
rng_state), checks the result reads with weights_only=True, and writes it to NEW (default: OLD, replaced
atomically: the old file stays whole until the new one is).
"""
from __future__ import annotations

from pathlib import Path

from house.checkpoints import OLD_FORMAT, read_checkpoint_file, unsafe_globals
from house.cli import ArgumentParser, NotFound, UserError, speaks
from house.files import atomic_path
from house.paths import shown


def read_old_checkpoint(path: Path) -> dict:
    """An older 05 latest.pt, its numpy arrays built (numpy's ndarray, dtype and _reconstruct allowed, nothing else)."""
    import numpy as np
    import torch

    names = unsafe_globals(path)
    if not (names and set(names) <= OLD_FORMAT):
        read_checkpoint_file(path)                                    # plain already, or refused in one line
        raise UserError(f"{shown(path)} is already in the current format (plain data): nothing to convert")
    reconstruct = (getattr(np, "_core", None) or np.core).multiarray._reconstruct
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), (reconstruct, "numpy._core.multiarray._reconstruct"),
               (reconstruct, "numpy.core.multiarray._reconstruct")]
    with torch.serialization.safe_globals(allowed):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(checkpoint, dict) and {"model", "train_config", "rng", "step"} <= set(checkpoint)):
        raise UserError(f"{shown(path)} is not a checkpoint 05 wrote (no model, train_config, rng and step): "
                        f"nothing to convert")
    return checkpoint


def plain(obj):
    """`obj` with every numpy array as a list (dicts, lists and tuples walked; everything else as it is)."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj


def convert(old: Path, new: Path) -> Path:
    """Write the older checkpoint `old` as plain data to `new` (atomically; may be `old`): read back with
    weights_only=True before it replaces anything."""
    import torch

    if not Path(old).is_file():
        raise NotFound(f"no checkpoint at {old}: pass the latest.pt to convert")
    checkpoint = plain(read_old_checkpoint(Path(old)))
    with atomic_path(Path(new)) as tmp:
        torch.save(checkpoint, tmp)
        read_checkpoint_file(tmp)                                     # data only now, or nothing is replaced
    return Path(new)


@speaks
def main(argv=None) -> None:
    parser = ArgumentParser(prog="python -m house.convert_checkpoint", description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="a 05 latest.pt written before checkpoints held plain data only")
    parser.add_argument("new", type=Path, nargs="?", help="where to write the converted one (default: OLD, replaced)")
    args = parser.parse_args(argv)
    new = convert(args.old, args.new or args.old)
    print(f"converted {shown(args.old)} → {shown(new)}: its numpy RNG state is a list now, and every loader of this "
          f"repo reads it (torch.load weights_only=True)")


if __name__ == "__main__":
    main()
