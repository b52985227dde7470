"""house — not a lesson: the plumbing every numbered file would otherwise repeat, kept out of the lessons' way.

Nothing here teaches linnet; read it once, or never. Every lesson imports it as `import house` and uses the
names below; `house` never imports a lesson (it takes paths, dicts, tensors and callables).

  paths.py        REPO_DIR, OUT_DIR (LINNET_OUT moves it), the data folders, `shown` (a path, short)
  cli.py          UserError / NotFound (library code raises them) and `speaks` (a script's main turns them
                  into one line `error: …`); ArgumentParser, `--preset/--out`, number types, the device
  files.py        atomic_path (temp + rename), write_json, save_plot, folder_lock (one writer per folder)
  text.py         reading .jsonl / .jsonl.zst / .txt / .parquet, streamed
  sources.py      the Hugging Face Hub (linnet's two datasets, listed and downloaded), the tiny preset's text
  shards.py       a folder of shards: manifest checks, sha256, is a shard whole, resuming a killed 04 run
  stats.py        "beyond seed noise": the paired t-test over seeds (and Welch's t), the one rule every table uses
  runs.py         a training run's plumbing (05): processes and DDP, RNG states, Ctrl-C, the run log and W&B,
                  resume refusals (`from house import runs`: it imports torch, so `import house` does not)
  checkpoints.py  checkpoint files: read as data only (torch.load weights_only=True), exports, their tokenizer
  convert_checkpoint.py  `python -m house.convert_checkpoint OLD`: an older 05 latest.pt as plain data
"""
from house.cli import (DEVICES, ArgumentParser, HelpFormatter, NotFound, UserError, add_common_args, check_writable,
                       default_device, int_from_to, is_first_process, is_out_of_memory, non_negative_float,
                       non_negative_int, pick_device, positive_float, positive_int, probability, progress, prompt, seed,
                       speaks, tiny_without_gpu)
from house.files import LOCK_NAME, atomic_path, disk_is_full, folder_lock, pid_is_alive, save_plot, write_json
from house.paths import (DATA_CACHE_DIR, EMBEDDED_CORPUS_DIR, EMBEDDED_DIR, EMBEDDED_HELLASWAG, OUT_DIR, RAW_DATA_DIR,
                         REPO_DIR, SHARED_CORPUS_DIR, SHARED_DATA_DIR, shown)
from house.sources import HUB_REVISIONS, fetch_fineweb_sample, find_tiny_data, has_internet, hub_errors
from house.text import TEXT_SUFFIXES, first_bytes, iter_file_texts, iter_jsonl_texts, iter_texts, list_text_files, open_text
from house import files, shards  # noqa: E402,F401  (house.shards.NAME, as 05 and 06 read 04's folders)
