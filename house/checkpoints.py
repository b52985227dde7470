"""Checkpoint files: find them, read them (torch or safetensors), check what a config.json claims against the
weights, write and check the folder linnet's published repo has, and pick the tokenizer that goes with one.

On state dicts and config dicts only: 02 builds the model (it passes `make_config`, a callable that turns a dict
of fields into its LLMConfig) and converts linnet's per-expert keys to its stacked experts. Every function raises
a house.UserError (a missing path: house.NotFound) that names the fix.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import pickle
import re
import sys
from collections import OrderedDict
from pathlib import Path

from house.cli import NotFound, UserError, check_writable
from house.files import atomic_path, write_json
from house.paths import shown

EXPERT_KEY = re.compile(r"^transformer\.h\.(\d+)\.moe\.experts\.(\d+)\.(swiglu\.w_v|c_proj)\.weight$")
LAYER_KEY = re.compile(r"^transformer\.h\.(\d+)\.")
WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth")


def find_checkpoint(path) -> tuple[Path, Path | None]:
    """(weights file, config.json or None) for a file or a directory holding one."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path} does not exist: pass a pytorch_model.bin, a .safetensors file or their directory")
    if path.is_file():
        cfg = path.parent / "config.json"
        return path, (cfg if cfg.is_file() else None)
    for name in ("pytorch_model.bin", "model.safetensors"):
        if (path / name).is_file():
            cfg = path / "config.json"
            return path / name, (cfg if cfg.is_file() else None)
    candidates = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("*.pt"))
    if not candidates:
        raise NotFound(f"no pytorch_model.bin or .safetensors file in {path}: download the weights first")
    cfg = path / "config.json"
    return candidates[0], (cfg if cfg.is_file() else None)


def read_checkpoint_file(path: Path):
    """torch.load (or safetensors) a file onto the CPU as data only, or a UserError if it is not readable.

    Always `weights_only=True`: tensors and plain values (dicts, lists, numbers, strings) come back, and a file
    that would unpickle any other object is refused before it is built (loading it could run code). 05's own
    latest.pt holds plain values only (its RNG states too); one written before that is named (not_data)."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        need_safetensors(f"reading {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt / truncated / not a checkpoint / not data
        refused = isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in str(e)
        names = unsafe_globals(path) if refused else []
        if names and names != ["?"]:      # objects a weights-only load does not build (a damaged file names none)
            raise UserError(not_data(path, names)) from None
        raise UserError(f"cannot read {path} as a checkpoint ({type(e).__name__}: {load_error(e)}): "
                        f"it is damaged or not a checkpoint — re-download or re-create it") from None


def load_error(e: Exception) -> str:
    """The first line of what went wrong, at most 200 characters; for torch's weights-only refusal, its reason
    (e.g. "Unsupported operand 110": random bytes), not its advice to load with weights_only off."""
    text = plain_text(str(e))
    reason = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    return (reason.group(1) if reason else (text.strip().splitlines() or [""])[0]).strip()[:200]


OLD_FORMAT = {"numpy.ndarray", "numpy.dtype", "numpy._core.multiarray._reconstruct",
              "numpy.core.multiarray._reconstruct"}   # what a 05 latest.pt of before issue 32 unpickles: its numpy RNG state


def unsafe_globals(path) -> list[str]:
    """The Python objects a torch.save file would unpickle beyond tensors and plain values, read off its pickle's
    opcodes (torch's scan: nothing is built, nothing runs); ["?"] if the scan itself fails."""
    import torch

    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        return ["?"]


def not_data(path, names: list[str] | None = None) -> str:
    """Why a file that torch.load(weights_only=True) refused is not read: a 05 latest.pt of the older format (a
    pickled numpy RNG state: convert it once), or anything else (never unpickled here). `names`: unsafe_globals."""
    names = sorted(unsafe_globals(path) if names is None else names, key=lambda name: name in OLD_FORMAT)   # odd first
    if names and set(names) <= OLD_FORMAT:
        return (f"{path} was written by an older 05_train.py: its numpy RNG state is a pickled object, which this repo "
                f"no longer loads (a checkpoint is data, never code): convert it once with python -m "
                f"house.convert_checkpoint {shown(path)}")
    return (f"{path} holds Python objects beyond tensors and plain values ({', '.join(names[:3])}), which this repo "
            f"never unpickles (loading them could run code): it is not a checkpoint this repo wrote; use its "
            f".safetensors or a plain state dict")


def plain_text(text: str) -> str:
    """`text` without terminal escape codes (torch's messages colour some words)."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def need_safetensors(what: str) -> None:
    """A UserError naming the package when safetensors is not installed (not "a damaged file")."""
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        raise UserError(f"{what} needs the safetensors package, which is not installed: "
                        f"pip install safetensors (it is in requirements.txt)") from None


def is_training_checkpoint(obj) -> bool:
    """A 05 checkpoint (`latest.pt`): a dict with the model's weights, its config and the optimizers' states."""
    return isinstance(obj, dict) and "model" in obj and "config" in obj and "optimizers" in obj


def read_state_dict(path: Path) -> dict:
    """A plain {name: tensor} dict from .safetensors or a torch.save file (a {"model": sd} wrapper too)."""
    return as_state_dict(read_checkpoint_file(path), path)


def as_state_dict(obj, path) -> dict:
    """What a weights file held, as a {name: tensor} dict (unwrapping {"model": sd}), or a UserError naming `path`."""
    import torch

    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise UserError(f"{path} does not hold a state_dict (a dict of tensors)")
    return obj


def strip_prefixes(sd: dict) -> dict:
    """Drop wrappers' prefixes: `_orig_mod.` (torch.compile) and `module.` (DDP)."""
    out = {}
    for k, v in sd.items():
        for prefix in ("_orig_mod.", "module."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def weight_shapes(sd: dict) -> dict:
    """What a linnet state_dict's tensors show of its config: n_layer, vocab_size, n_embd, n_experts, ffn_dim,
    qkv_rows (= n_embd + 2·n_kv_head·head_dim), and head_dim when the RoPE buffer is there."""
    sd = strip_prefixes(sd)
    emb = sd.get("transformer.wte.weight", sd.get("lm_head.weight"))
    if emb is None or "transformer.h.0.attn.c_attn.weight" not in sd:
        raise UserError("checkpoint has no transformer.wte.weight / lm_head.weight / first attention layer: "
                        "not a linnet checkpoint")
    layers = {int(m.group(1)) for k in sd if (m := LAYER_KEY.match(k))}
    if "transformer.h.0.moe.w_v" in sd:                               # our own stacked layout
        E, two_f, _ = sd["transformer.h.0.moe.w_v"].shape
    else:
        experts = {int(m.group(2)) for k in sd if (m := EXPERT_KEY.match(k))}
        E, two_f = len(experts), sd["transformer.h.0.moe.experts.0.swiglu.w_v.weight"].shape[0]
    out = dict(n_layer=len(layers), vocab_size=emb.shape[0], n_embd=emb.shape[1], n_experts=E, ffn_dim=two_f // 2)
    inv_freq = sd.get("transformer.h.0.attn.rotary_emb.inv_freq")
    if inv_freq is not None:
        out["head_dim"] = 2 * inv_freq.numel()
    out["qkv_rows"] = sd["transformer.h.0.attn.c_attn.weight"].shape[0]
    return out


def config_from_shapes(sd: dict, path="the checkpoint") -> dict:
    """The config fields a linnet state_dict's shapes give (no config.json beside it).

    head_dim is not a weight's shape: it comes from the RoPE buffer `inv_freq` (head_dim/2 entries) when the file
    has it, else linnet's 64. Shapes that do not fit it are a UserError (`path` names the file) instead of a wrong
    model. block_size has no weight either: linnet's 1024 is assumed, and a note on stderr says so."""
    shapes = weight_shapes(sd)
    C, qkv_rows, head_dim = shapes["n_embd"], shapes["qkv_rows"], shapes.get("head_dim", 64)
    n_head, kv_rows = C // max(head_dim, 1), qkv_rows - C
    n_kv_head = kv_rows // (2 * head_dim)
    if head_dim < 2 or C % head_dim or kv_rows % (2 * head_dim) or n_kv_head < 1 or n_head % n_kv_head:
        raise UserError(f"{path} has no config.json and its shapes don't fit head_dim {head_dim} "
                        f"(width {C}, q|k|v rows {qkv_rows}): put linnet's config.json beside it")
    print(f"note: {shown(path)} has no config.json: shapes read from the weights, block_size 1024 "
          f"(linnet's) assumed", file=sys.stderr)
    return dict(depth=shapes["n_layer"], vocab_size=shapes["vocab_size"], n_experts=shapes["n_experts"],
                n_layer=shapes["n_layer"], n_embd=C, n_head=n_head, n_kv_head=n_kv_head, head_dim=head_dim,
                ffn_dim=shapes["ffn_dim"])


CONFIG_JSON_TYPES = {"depth": int, "block_size": int, "vocab_size": int, "n_experts": int, "n_active_experts": int,
                     "n_layer": int, "n_head": int, "n_kv_head": int, "n_embd": int, "head_dim": int, "ffn_dim": int,
                     "rope_base": (int, float), "balance_coef": (int, float), "qk_norm": bool,
                     "zero_init_out": bool, "x0_mix": bool, "logit_softcap": (int, float)}
# linnet's published config.json also describes the model in words for the Hub (model_type "linnet", the
# architecture, the dtype, the pipeline tag): read, never used; our exports add the sha256 of their tokenizer.json
# (checked by pick_tokenizer, not a model field). Any other key a linnet config lacks is refused.
CONFIG_CARD_KEYS = ("model_type", "architectures", "torch_dtype", "pipeline_tag", "transformers_version", "attention",
                    "ffn", "normalization", "sequence_mixing", "sparsity", "optimizer", "tokenizer_sha256")
LINNET_KEYS = ("depth", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn_dim", "block_size", "vocab_size",
               "n_experts", "n_active_experts", "rope_base")   # the fields of linnet's own config.json, in its order


def read_config_json(path: Path, sd: dict, make_config):
    """config.json → the model's config (`make_config(fields)`), believed only where it can be checked."""
    try:
        claims = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {path} as JSON ({type(e).__name__}): re-export the folder "
                        f"(python 02_model.py --export) or remove config.json to read the shapes off the weights") from None
    return config_from_claims(claims, path, sd, make_config)


def config_from_claims(claims, source, sd: dict, make_config):
    """A config dict (config.json, or the copy an export keeps inside pytorch_model.bin) → `make_config(fields)`.

    Unknown keys and wrong types are refused; every field the weights show (weight_shapes) must agree; and when
    the weights file carries the config it was exported with (saved_config), every field must agree with that
    too — the only check for block_size, n_active_experts, qk_norm and the linnet+ switches, which have no weight
    of their own (linnet's own file carries none: they are range-checked by the config only)."""
    if not isinstance(claims, dict):
        raise UserError(f"{source} is not a JSON object of config fields: re-export the folder")
    if claims.get("model_type", "linnet") != "linnet":
        raise UserError(f"{source} is the config of a {claims['model_type']!r} model, not linnet: pass a linnet folder")
    claims = {k: v for k, v in claims.items() if k not in CONFIG_CARD_KEYS}
    unknown = sorted(set(claims) - set(CONFIG_JSON_TYPES))
    wrong = [k for k, v in claims.items() if k in CONFIG_JSON_TYPES and not config_value_ok(v, CONFIG_JSON_TYPES[k])]
    if unknown or wrong:
        what = f"keys a linnet config does not have ({', '.join(unknown[:4])})" if unknown else \
            f"a value of the wrong type ({wrong[0]} = {claims[wrong[0]]!r})"
        raise UserError(f"{source} has {what}: fix it, or re-export the folder with python 02_model.py --export")
    ours = [k for k in CONFIG_JSON_TYPES if k not in LINNET_KEYS]     # what this repo's exports always write
    if any(k in claims for k in ours) and not all(k in claims for k in ours):
        missing = [k for k in ours if k not in claims]
        raise UserError(f"{source} lacks {', '.join(missing)}, which this repo's exports always write (a switch left out "
                        f"would be read as off): restore them, or re-export the folder with python 02_model.py --export")
    config = built(make_config, claims, f"{source} does not describe a linnet model")
    shapes = weight_shapes(sd)
    claimed = {name: getattr(config, name) for name in shapes if name != "qkv_rows"}
    claimed["qkv_rows"] = config.n_embd + 2 * config.n_kv_head * config.head_dim
    saved = saved_config(sd)
    if saved is not None:                                          # the export's own record, inside the weights
        exported = built(make_config, {k: v for k, v in saved.items() if k not in CONFIG_CARD_KEYS},
                         f"{source}'s weights carry a config that does not describe a linnet model")
        shapes.update({k: getattr(exported, k) for k in CONFIG_JSON_TYPES})
        claimed.update({k: getattr(config, k) for k in CONFIG_JSON_TYPES})
    for name, seen in shapes.items():
        if claimed[name] != seen:
            label = "q|k|v rows (n_embd + 2·n_kv_head·head_dim)" if name == "qkv_rows" else name
            raise UserError(f"{source} says {label} = {claimed[name]} but the weights have {seen}: the config "
                            f"belongs to another model: fix it or re-export the folder")
    return config


def built(make_config, fields: dict, what: str):
    """make_config(fields), its TypeError / ValueError said as `what` (e.g. n_active_experts out of range)."""
    try:
        return make_config(fields)
    except (TypeError, ValueError) as e:
        raise UserError(f"{what} ({e}): fix it or re-export the folder") from None


def saved_config(sd) -> dict | None:
    """The config an export keeps inside pytorch_model.bin (the state_dict's `_metadata`, which torch.save keeps
    and every `load_state_dict` ignores), or None (linnet's own file, a .safetensors, an older export)."""
    record = getattr(sd, "_metadata", None) or {}
    saved = record.get("", {}).get("linnet_config") if isinstance(record.get("", {}), dict) else None
    return saved if isinstance(saved, dict) else None


def config_value_ok(value, kind) -> bool:
    """True if a JSON value has the type a config field needs (a bool is not an int here; None = derive it)."""
    if value is None:
        return kind is int                                            # derived fields may be left to depth
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, kind)


def published_config(fields: dict, tokenizer_sha256: str | None = None) -> dict:
    """config.json as linnet's published repo writes it (model_type, architectures, the derived widths, dtype,
    pipeline tag), then the fields only this repo has (head_dim, QK-norm, the balance weight, linnet+), then the
    sha256 of the tokenizer.json exported beside it, if given. `fields`: the model config as a dict; how it runs
    (moe_impl, rope_impl) is not part of the model."""
    ours = {k: v for k, v in fields.items() if k in CONFIG_JSON_TYPES and k not in LINNET_KEYS}
    made_with = {"tokenizer_sha256": tokenizer_sha256} if tokenizer_sha256 else {}
    return {"model_type": "linnet", "architectures": ["LLM"], **{k: fields[k] for k in LINNET_KEYS},
            "torch_dtype": "float32", "pipeline_tag": "text-generation", **ours, **made_with}


def save_pytorch_model_bin(sd: dict, path: Path, config: dict | None = None, tokenizer_sha256: str | None = None) -> Path:
    """Write {name: tensor} as linnet's published file: a plain torch state_dict (`torch.save`), atomically.
    The tied pair keeps one storage under both names, as the original `model.state_dict()` does, so the file
    loads with linnet's own `load_state_dict` and with ours. (linnet's published file is bf16; ours keeps the
    precision the run trained in, fp32, so exporting and loading again gives the same numbers.) `config` (the
    model config as a dict), when given, rides inside the file as the state_dict's `_metadata` (saved_config):
    loaders check config.json against it, and a folder whose config.json went missing still loads right."""
    import torch

    out = OrderedDict((k, v.detach().cpu()) for k, v in sd.items())
    if config is not None:                                             # kept for the loader's checks (saved_config)
        out._metadata = OrderedDict({"": {"linnet_config": published_config(config, tokenizer_sha256)}})
    with atomic_path(path) as tmp:
        torch.save(out, tmp)
        tmp.chmod(0o644)                                               # readable by whoever it is handed to
    return path


EXPORT_FILES = ("pytorch_model.bin", "config.json", "tokenizer.json", "tokenizer_config.json")   # what --export writes


def check_export_folder(out_dir: Path, overwrite: bool = False) -> None:
    """Refuse, before anything is written, a folder that holds model files: weights of another name would
    stay beside ours and a loader could read them instead (find_checkpoint), and an earlier export
    would be replaced. `overwrite` allows replacing an earlier export (the EXPORT_FILES) only."""
    if not out_dir.is_dir():
        return
    weights = {p.name for p in out_dir.iterdir() if p.suffix in WEIGHT_SUFFIXES}
    foreign = sorted(weights - {"pytorch_model.bin"})
    if foreign:
        raise UserError(f"{out_dir} already holds other weights ({', '.join(foreign)}) that loaders would "
                        f"read instead of the export: pass a new --out, or remove them")
    ours = [name for name in EXPORT_FILES if (out_dir / name).exists()]
    if ours and not overwrite:
        raise UserError(f"{out_dir} already holds an export ({', '.join(ours)}): pass a new --out, or "
                        f"--overwrite to replace those files")


def write_export_folder(out_dir: Path, state_dict: dict, config: dict, tokenizer: Path, eos: str, pad: str,
                        trained_with: str | None = None) -> Path:
    """linnet's published folder: pytorch_model.bin (its config inside), config.json, tokenizer.json (the same
    bytes: the same sha256, which config.json and the weights' record carry: pick_tokenizer checks it) and the
    tokenizer_config.json transformers reads (`eos`, `pad`: special tokens). The tokenizer is read once: bytes
    that are not `trained_with` (the sha256 the checkpoint names) are refused before anything is written. Every
    file atomic; an `out_dir` that cannot be written is a UserError first."""
    check_writable(out_dir)
    tokenizer_bytes = Path(tokenizer).read_bytes()
    sha = hashlib.sha256(tokenizer_bytes).hexdigest()
    if trained_with and trained_with != sha:   # 02 checked the file; these are the bytes written (01 --overwrite?)
        raise UserError(f"{tokenizer} changed while it was being exported: it is no longer the tokenizer the "
                        f"checkpoint was trained with; pass the --tokenizer the run used")
    save_pytorch_model_bin(state_dict, out_dir / "pytorch_model.bin", config, sha)
    write_json(out_dir / "config.json", published_config(config, sha))
    write_json(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config["block_size"], "unk_token": None,
        "bos_token": None, "eos_token": eos, "pad_token": pad, "add_prefix_space": False, "trim_offsets": True})
    with atomic_path(out_dir / "tokenizer.json") as tmp:
        tmp.write_bytes(tokenizer_bytes)
    return out_dir


def check_export(checkpoint: Path, out_dir: Path, overwrite: bool = False) -> None:
    """Before anything is read or written: the checkpoint exists and `out_dir` holds no other model files."""
    if not Path(checkpoint).is_file():
        raise NotFound(f"no checkpoint at {checkpoint}: pass --export PATH to a 05 latest.pt")
    check_export_folder(Path(out_dir), overwrite)


def check_made_with(checkpoint, trained_with: str | None, tokenizer) -> None:
    """A checkpoint that records the sha256 of its training tokenizer (`trained_with`) is used with that one only."""
    if trained_with and trained_with != file_sha256(tokenizer):
        raise UserError(f"{checkpoint} was trained with another tokenizer than {tokenizer}: "
                        f"pass the --tokenizer the run used")


def exported_tokenizer(path) -> Path | None:
    """The tokenizer.json an exported folder carries (`path` is the folder or a weights file in it)."""
    path = Path(path)
    if path.is_dir() or path.suffix in (".safetensors", ".bin"):
        own = (path if path.is_dir() else path.parent) / "tokenizer.json"
        return own if own.is_file() else None
    return None


def check_export_tokenizer(tokenizer: Path) -> None:
    """An export folder's tokenizer.json must be the file it was exported with: the sha256 its config.json records
    and the one inside its pytorch_model.bin (saved_config; read memory-mapped, weights only). Older exports and
    linnet's own folder record none."""
    folder, recorded = Path(tokenizer).parent, set()
    with contextlib.suppress(Exception):   # an unreadable config.json or weights file: the loader says so, next
        recorded.add(json.loads((folder / "config.json").read_text()).get("tokenizer_sha256"))
    with contextlib.suppress(Exception):
        import torch

        sd = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True, mmap=True)
        recorded.add((saved_config(sd) or {}).get("tokenizer_sha256"))
    actual = file_sha256(tokenizer)
    other = sorted(str(sha) for sha in recorded - {None, actual})
    if other:
        raise UserError(f"{tokenizer} is not the tokenizer this export was made with (it recorded sha256 "
                        f"{other[0][:12]}…, the file has {actual[:12]}…): put the export's own tokenizer.json "
                        f"back, or export the checkpoint again with python 02_model.py --export")


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes (a tokenizer's fingerprint: 01's tokenizer_sha256 of a file is the same)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pick_tokenizer(checkpoint, given: Path | None, default: Path) -> Path:
    """The tokenizer to use with `checkpoint`: an exported folder's own tokenizer.json wins, if it is the one the
    export recorded (its sha256: check_export_tokenizer); a `given` one that differs from it (by sha256) is a
    UserError. Without a folder tokenizer: `given`, else `default`."""
    own = exported_tokenizer(checkpoint)
    if own is None:
        return Path(given) if given is not None else Path(default)
    check_export_tokenizer(own)
    if given is not None and Path(given).resolve() != own.resolve():
        if not Path(given).is_file() or file_sha256(given) != file_sha256(own):
            raise UserError(f"{checkpoint} carries its own tokenizer.json, and --tokenizer {given} is another "
                            f"one: drop --tokenizer (the folder's own is used)")
    return own


def check_finite(model, path):
    """A UserError if any weight of `model` is NaN or inf (what a diverged run saves), else `model`."""
    import torch

    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise UserError(f"{path} holds non-finite weights (NaN/inf): it comes from a diverged run; "
                        f"use an earlier checkpoint")
    return model


def stacked_state_dict(sd: dict, expected: dict, rope_base: float) -> dict:
    """linnet's published layout (a Linear per expert) — or our own stacked one — as the state dict of a model
    whose own state_dict() is `expected`: each layer's experts stacked into moe.w_v (E, 2F, C) and moe.c_proj
    (E, C, F), the tied pair filled from either name, inv_freq filled when absent (it is derived). Every layer,
    expert, key and shape is checked against `expected`; a mismatch is a UserError that names it."""
    import torch

    sd = strip_prefixes(sd)
    n_layer = len({int(m.group(1)) for k in expected if (m := LAYER_KEY.match(k))})
    n_experts = expected["transformer.h.0.moe.w_v"].shape[0]
    layers = sorted({int(m.group(1)) for k in sd if (m := LAYER_KEY.match(k))})
    if len(layers) != n_layer:
        raise UserError(f"the checkpoint has {len(layers)} layers (depth {len(layers)}) but the model has "
                        f"n_layer={n_layer}: build the model with the checkpoint's depth (LLM.from_pretrained infers it)")
    converted, experts = {}, {}
    for k, v in sd.items():
        m = EXPERT_KEY.match(k)
        if m:
            experts[(int(m.group(1)), m.group(3), int(m.group(2)))] = v
        else:
            converted[k] = v
    for i in range(n_layer):                                           # per-expert → stacked (E, ...)
        for name, ours in (("swiglu.w_v", "w_v"), ("c_proj", "c_proj")):
            found = sorted(e for (layer, n, e) in experts if layer == i and n == name)
            if not found:
                continue
            if found != list(range(n_experts)):
                raise UserError(f"layer {i} of the checkpoint has experts {found} but the model has "
                                f"n_experts={n_experts}: build the model with the checkpoint's expert count")
            converted[f"transformer.h.{i}.moe.{ours}"] = torch.stack([experts[(i, name, e)] for e in found])
    if "transformer.wte.weight" not in converted and "lm_head.weight" in converted:
        converted["transformer.wte.weight"] = converted["lm_head.weight"]
    converted.setdefault("lm_head.weight", converted.get("transformer.wte.weight"))
    for k, v in expected.items():                                      # inv_freq is derived: fill if absent
        if k.endswith("rotary_emb.inv_freq") and k not in converted:
            converted[k] = v
    check_keys_and_shapes(converted, expected, rope_base)
    return {k: converted[k] for k in expected}


def check_keys_and_shapes(converted: dict, expected: dict, rope_base: float) -> None:
    """Every key of `expected` present with its shape, nothing else, and RoPE's inv_freq from the same base."""
    import torch

    missing = [k for k in expected if converted.get(k) is None]
    unexpected = [k for k in converted if k not in expected]
    if missing or unexpected:
        raise UserError(f"checkpoint keys do not match the model: missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}: is this a linnet checkpoint?")
    for k, v in expected.items():
        if tuple(converted[k].shape) != tuple(v.shape):
            raise UserError(f"checkpoint tensor {k} has shape {list(converted[k].shape)} but the model "
                            f"expects {list(v.shape)}: build the model with the checkpoint's config")
        if k.endswith("inv_freq") and v.device.type != "meta" and \
                not torch.allclose(converted[k].float().cpu(), v.float().cpu(), rtol=1e-2):
            raise UserError(f"checkpoint {k} differs from RoPE base {rope_base}: set rope_base to match")


LAYER_NAMES = ("ln1.weight", "ln2.weight", "attn.l_conv.weight", "attn.c_attn.weight", "attn.c_proj.weight",
               "attn.rotary_emb.inv_freq", "moe.router.weight")   # each layer's keys before its experts, linnet's order


def per_expert_state_dict(sd: dict) -> dict:
    """Our stacked state dict → linnet's published layout, in the key order of docs/checkpoint_keys.json: each
    layer's keys, then expert by expert `moe.experts.{e}.swiglu.w_v.weight` (2F, C) and `.c_proj.weight` (C, F)
    (copies: each its own storage), then ln_f and the tied lm_head; keys linnet has not (linnet+'s x0_lambdas)
    come last."""
    n_layer = len({int(m.group(1)) for k in sd if (m := LAYER_KEY.match(k))})
    out = {"transformer.wte.weight": sd["transformer.wte.weight"]}
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        out.update({p + name: sd[p + name] for name in LAYER_NAMES})
        w_v, c_proj = sd[p + "moe.w_v"], sd[p + "moe.c_proj"]
        for e in range(w_v.shape[0]):
            out[p + f"moe.experts.{e}.swiglu.w_v.weight"] = w_v[e].clone()
            out[p + f"moe.experts.{e}.c_proj.weight"] = c_proj[e].clone()
    out["transformer.ln_f.weight"] = sd["transformer.ln_f.weight"]
    out["lm_head.weight"] = sd["lm_head.weight"]
    stacked = {k for k in sd if k.endswith((".moe.w_v", ".moe.c_proj"))}
    out.update({k: v for k, v in sd.items() if k not in out and k not in stacked})
    return out


def read_weights(path, make_config, config=None) -> tuple[dict, object]:
    """(state dict, model config) of a weights file or a folder holding one, read with weights only. The config:
    `config` if given; a 05 checkpoint's own; config.json's, every claim the weights can show checked against
    them; the one an export keeps inside its pytorch_model.bin; else the tensors' shapes (linnet's own file).
    `make_config(fields)` builds the model's config from a dict of fields."""
    weights, config_json = find_checkpoint(path)
    obj = read_checkpoint_file(weights)
    if is_training_checkpoint(obj):                                   # a 05 latest.pt carries its config
        return obj["model"], config or make_config(obj["config"])
    sd = as_state_dict(obj, weights)
    if config is not None:
        return sd, config
    if config_json is not None:
        return sd, read_config_json(config_json, sd, make_config)
    if saved_config(sd) is not None:                                  # an export whose config.json went missing
        return sd, config_from_claims(saved_config(sd), weights, sd, make_config)
    return sd, make_config(config_from_shapes(sd, path=weights))


def read_training_checkpoint(path) -> dict | None:
    """A 05 checkpoint (`latest.pt`, or the folder holding one) as the dict 05 saved ("model" in linnet's layout,
    "config", "tokenizer_sha256", ...); None when `path` is not one (a weights file, an exported folder)."""
    path = Path(path)
    if path.is_dir() and (path / "latest.pt").is_file():             # a 05 output folder
        path = path / "latest.pt"
    if not (path.is_file() and path.suffix in (".pt", ".pth")):
        return None
    checkpoint = read_checkpoint_file(path)                           # data only: optimizer and RNG states too
    if not (isinstance(checkpoint, dict) and "model" in checkpoint and "config" in checkpoint):
        raise UserError(f"{path} is not a 05_train checkpoint (no 'model' and 'config'): "
                        f"pass a 05 .pt, or a pytorch_model.bin / .safetensors")
    return checkpoint


LINNET_ARGS = ("depth", "block_size", "vocab_size", "n_experts", "n_active_experts")   # linnet's LLMConfig(...)


def original_code_line(fields: dict, derived: dict) -> str:
    """Whether linnet's own code loads an export, and computes what this model computes. `fields`: the export's
    config; `derived`: what linnet's LLMConfig(depth, block_size, vocab_size, n_experts, n_active_experts) makes of
    its five numbers (every width from depth, head_dim 64, RoPE base 50,000). linnet's code knows no switch:
    x0_mix adds weights it lacks; logit_softcap and qk_norm=False keep linnet's keys but change the logits, so its
    load_state_dict takes them without a word; zero_init_out changes the start only."""
    if any(derived[k] != fields[k] for k in ("n_layer", "n_head", "n_kv_head", "n_embd", "head_dim", "ffn_dim",
                                             "rope_base")):
        return ("linnet's own code cannot build this shape (its LLMConfig derives every width from depth, head_dim "
                "64): load it with this repo's LLM.from_pretrained")
    if fields.get("x0_mix"):
        return ("linnet's own code cannot load it: x0_mix adds weights (x0_lambdas) its model does not have; load it "
                "with this repo's LLM.from_pretrained")
    changed = ([f"logit_softcap {fields['logit_softcap']:g}"] if fields.get("logit_softcap") else []) + \
        ([] if fields.get("qk_norm", True) else ["qk_norm off"])
    if changed:
        return (f"warning: linnet's own code loads these weights without a word but computes other logits "
                f"({', '.join(changed)}: same keys, other outputs): load it with this repo's LLM.from_pretrained")
    args = ", ".join(f"{k}={fields[k]}" for k in LINNET_ARGS)
    return f"linnet's own code loads it too: LLM(LLMConfig({args})) + load_state_dict"


def refuse_unknown_fields(checkpoint: dict, path, model_class, train_class=None, train_config: dict | None = None):
    """A 05 checkpoint whose config holds a field this code does not know is refused in one line, never read with
    the field dropped: another version of linnet wrote it, and what the field changes (a model's logits, like
    logit_softcap; a run's schedule) this code cannot do; the line names the commit the checkpoint records. Checked:
    the model's config ("config", fields of `model_class`); with `train_class`, `train_config` too (05's, its model
    nested under "model")."""
    sections = [(checkpoint.get("config") or {}, model_class, "model")]
    if train_class is not None:
        sections += [(train_config, train_class, "training"), (train_config.get("model") or {}, model_class, "model")]
    commit = checkpoint.get("git_commit")
    use = (f"the code that wrote it (git checkout {commit[:12]})" if isinstance(commit, str) and commit != "unknown"
           else "the version of this repo that wrote it")
    for fields, cls, what in sections:
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            listed = ", ".join(f"{k} = {fields[k]!r}" for k in unknown[:3])
            effect = "compute another model" if what == "model" else "train another run"
            raise UserError(f"{shown(path)} holds a {what} config field this code does not know ({listed}): another "
                            f"version of linnet wrote it, and dropping the field could {effect}; use {use}, or delete "
                            f"the field if you added it")


def saved_model_config(checkpoint: dict, path, config_class):
    """The model config a 05 checkpoint saved ("config") as `config_class` (02's LLMConfig), an unknown field refused
    (refuse_unknown_fields); moe_impl and loss_impl "auto": how it ran is not the model."""
    refuse_unknown_fields(checkpoint, path, config_class)
    return config_class(**{**checkpoint["config"], "moe_impl": "auto", "loss_impl": "auto"})
