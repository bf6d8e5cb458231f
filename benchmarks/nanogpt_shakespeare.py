"""lit_lm's tiny-shakespeare GPT beside nanoGPT's CPU "baby GPT", in one run on this machine, one after the other.

    python benchmarks/nanogpt_shakespeare.py --nanogpt /path/to/nanoGPT      # a checkout of karpathy/nanoGPT
    python benchmarks/nanogpt_shakespeare.py --nanogpt /path/to/nanoGPT --record   # + benchmarks/RESULTS.md

Both arms get the same text (``../shared/data/tinyshakespeare/input.txt``) and the same split (first 90% of the
characters train, the last 10% validate) and are scored the same way: **bits per character over the whole
validation text**, every character predicted once (non-overlapping windows of the model's context, the first window
conditioned on the last training character; total NLL in nats / characters / ln 2). nanoGPT's own ``val loss`` is
the mean over ``eval_iters`` random windows, so it is not used.

- nanoGPT: its README's CPU recipe, ``train.py config/train_shakespeare_char.py --device=cpu --compile=False
  --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
  --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0``, on the character data that its
  ``data/shakespeare_char/prepare.py`` writes (written here the same way: it would download the text). Scored: the
  checkpoint it keeps (the best of its evaluations).
- lit_lm: ``python -m lit_lm fit --config experiments/cpu/gpt_shakespeare.yaml`` with a fresh cache (tokenizer
  training and corpus preparation timed apart from training), then ``validate`` on its last checkpoint, whose
  ``val/bpc`` is the figure above (the config reads the whole validation text).

Run it alone on the machine: both arms are timed by the wall clock.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from _common import machine, record

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
CONFIG = "experiments/cpu/gpt_shakespeare.yaml"
NANOGPT_RECIPE = [
    "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
    "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
    "--lr_decay_iters=2000", "--dropout=0.0",
]  # fmt: skip


def write_char_data(text: str, out: Path) -> None:
    """What nanoGPT's ``data/shakespeare_char/prepare.py`` writes: sorted-character ids, 90/10 split, uint16."""
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    n = len(text)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", text[: int(n * 0.9)]), ("val", text[int(n * 0.9) :])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(out / f"{name}.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    with open(out / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)


def nanogpt_whole_val_bpc(nanogpt: Path, ckpt_path: Path, text: str) -> tuple[float, int]:
    """Bits per character of nanoGPT's checkpoint over the whole validation text; and its iteration."""
    sys.path.insert(0, str(nanogpt))
    from model import GPT, GPTConfig  # nanoGPT's model.py

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
    model.eval()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    cut = int(len(text) * 0.9)
    stream = torch.tensor([stoi[c] for c in text[cut - 1 :]])  # last train character, then the validation text
    T = ckpt["model_args"]["block_size"]
    n_val = len(stream) - 1
    nll = 0.0
    with torch.no_grad():
        for s in range(0, n_val, 64 * T):  # 64 windows per batch
            starts = range(s, min(s + 64 * T, n_val), T)
            for part in ([a for a in starts if a + T <= n_val], [a for a in starts if a + T > n_val]):
                if not part:
                    continue
                n = min(T, n_val - part[0])
                x = torch.stack([stream[a : a + n] for a in part])
                y = torch.stack([stream[a + 1 : a + n + 1] for a in part])
                logits, _ = model(x, y)  # with targets: logits at every position
                nll += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
    return nll / n_val / math.log(2), int(ckpt["iter_num"])


def run_nanogpt(nanogpt: Path, work: Path, text: str) -> dict:
    write_char_data(text, nanogpt / "data" / "shakespeare_char")
    out_dir = work / "nanogpt"
    cmd = [sys.executable, "train.py", *NANOGPT_RECIPE, f"--out_dir={out_dir}"]
    print("\n=== nanoGPT:", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    log = subprocess.run(cmd, cwd=nanogpt, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    evals = re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", log)
    bpc, it = nanogpt_whole_val_bpc(nanogpt, out_dir / "ckpt.pt", text)
    return {"wall_s": wall, "bpc": bpc, "ckpt_iter": it, "own_val_loss": float(evals[-1][2]) if evals else None}


def run_lit_lm(work: Path) -> dict:
    root, cache = work / "lit_lm", work / "cache"
    common = ["--config", CONFIG, "--trainer.default_root_dir", str(root), "--data.cache_dir", str(cache),
              "--trainer.enable_progress_bar", "false"]  # fmt: skip
    print("\n=== lit_lm: tokenizer and corpus preparation (timed apart), then fit", flush=True)
    setup = json.loads(_child(_PREPARE, CONFIG, str(cache)))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lit_lm", "fit", *common], cwd=ROOT, check=True)
    fit_wall = time.perf_counter() - t0
    final = json.loads(_child(_VALIDATE, str(root / "checkpoints" / "last.ckpt"), *common))
    return {**setup, **final, "fit_wall_s": fit_wall}


def _child(code: str, *args: str) -> str:
    """Run ``code`` in a fresh Python in the repository root; its last stdout line."""
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


# train the config's tokenizer and prepare its corpus into a fresh cache (fit then finds both there)
_PREPARE = """
import json, sys, time, yaml
from lit_lm.data import CausalLMDataModule
init = yaml.safe_load(open(sys.argv[1]))["data"]["init_args"]
dm = CausalLMDataModule(**{**init, "cache_dir": sys.argv[2]})
t0 = time.perf_counter(); tok = dm.tokenizer; t1 = time.perf_counter(); dm.prepare_data(); t2 = time.perf_counter()
print(json.dumps({"tokenizer_s": t1 - t0, "prepare_s": t2 - t1, "val_chars": dm.val_num_chars,
                  "val_tokens": dm.num_val_tokens, "round_trip": dm.val_round_trip, "vocab": tok.vocab_size}))
"""

# validate the last checkpoint over the whole validation text; its metrics and step as JSON
_VALIDATE = """
import json, sys
from lit_lm.cli import LitLMCLI
from lit_lm.serialization import read_checkpoint
ckpt = sys.argv[1]
cli = LitLMCLI(args=sys.argv[2:], run=False)
metrics = cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt, verbose=False)[0]
print(json.dumps({**{k: float(v) for k, v in metrics.items()}, "step": int(read_checkpoint(ckpt)["global_step"])}))
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nanogpt", type=Path, required=True, help="a checkout of github.com/karpathy/nanoGPT")
    p.add_argument("--record", action="store_true",
                   help="append the table to benchmarks/RESULTS.md (a tracked file); default: print only")
    args = p.parse_args(argv)
    text = DATA.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        nano = run_nanogpt(args.nanogpt.resolve(), Path(tmp), text)
        lit = run_lit_lm(Path(tmp))
    table = (
        f"### nanogpt_shakespeare: tiny shakespeare, bits per character over the whole validation text, "
        f"{date.today()}\n\n"
        f"Machine: {machine()}; torch {torch.__version__}. One run of `benchmarks/nanogpt_shakespeare.py`, the two "
        f"arms one after the other. Validation: the last 10% of the characters ({len(text) - int(len(text) * 0.9):,}), "
        f"every character predicted once by both.\n\n"
        "| arm | tokens | bpc (whole val text) | training | set-up before training |\n|---|---|---:|---|---|\n"
        f"| nanoGPT, README CPU recipe (4x128, 2000 iters of 12x64) | characters (65) | {nano['bpc']:.3f} | "
        f"{nano['wall_s']:.0f} s wall for the whole `train.py` run (checkpoint of iter {nano['ckpt_iter']}; its own "
        f"20-batch val loss {nano['own_val_loss']:.3f} nats) | data written by this script |\n"
        f"| lit_lm, `{CONFIG}` | byte-level BPE ({lit['val_tokens']:,} val tokens, "
        f"{lit['val_chars'] / lit['val_tokens']:.2f} chars/token, round trip {lit['round_trip']}) | "
        f"{lit['val/bpc']:.3f} | the config's `max_time` (80 s), {lit['step']} steps; {lit['fit_wall_s']:.0f} s wall "
        f"for the whole `fit` (set-up excluded: done before) | tokenizer training {lit['tokenizer_s']:.1f} s, corpus "
        f"preparation {lit['prepare_s']:.1f} s |\n"
    )
    record(table, RESULTS, args.record)


if __name__ == "__main__":
    main()
