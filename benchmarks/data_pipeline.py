"""Data pipeline throughput: tokenizer training, corpus preparation (MB/s) and DataModule batches/s.

Runs on the 8 Gutenberg novels + the KJV bible in ``../shared/data`` (about 10 MB of text) and prints a markdown
table; ``--record`` also appends it to ``benchmarks/RESULTS.md``::

    python benchmarks/data_pipeline.py                  # default data dir: ../shared/data beside the checkout
    python benchmarks/data_pipeline.py --record         # and append the table to benchmarks/RESULTS.md

Every step starts from an empty temporary cache, so nothing is reused between runs (the cache-hit row measures the
reuse of a corpus prepared within the same run).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _common import machine, record  # benchmarks/_common.py

RESULTS = Path(__file__).with_name("RESULTS.md")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def versions() -> str:
    import lightning
    import numpy
    import tokenizers
    import torch

    return (
        f"Python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}, "
        f"tokenizers {tokenizers.__version__}, numpy {numpy.__version__}"
    )


def batches_per_second(loader, n: int) -> tuple[float, float]:
    """(batches/s, seconds to the first batch) over ``n`` batches after the first."""
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    done = 0
    for _ in range(n):
        try:
            next(it)
        except StopIteration:
            break
        done += 1
    return done / (time.perf_counter() - t1), first


def wordpiece_vs_library(paths: list[Path], vocab_size: int, rounds: int = 3) -> tuple[str, str, str]:
    """lit_lm's reproducible WordPiece training against the ``tokenizers`` WordPieceTrainer (whose ids vary from run
    to run), on the same sentences with the same normalizer and pre-tokenizer, side by side: training time only,
    alternating for ``rounds`` rounds, medians."""
    import statistics

    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, trainers

    from lit_lm.data.core.tokenizer import SPECIAL_TOKENS, Tokenizer
    from lit_lm.data.pretraining.text import read_corpus

    texts = [" ".join(d.sentences) for d in read_corpus(paths).documents()]
    ours_s, library_s = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ours = Tokenizer.train_from_texts(texts, vocab_size=vocab_size)
        ours_s.append(time.perf_counter() - t0)
        library = HFTokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
        library.normalizer, library.pre_tokenizer = ours.hf.normalizer, ours.hf.pre_tokenizer
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                            continuing_subword_prefix="##", show_progress=False)  # fmt: skip
        t0 = time.perf_counter()
        library.train_from_iterator(texts, trainer)
        library_s.append(time.perf_counter() - t0)
    t_ours, t_lib = statistics.median(ours_s), statistics.median(library_s)
    shared = len(set(ours.hf.get_vocab()) & set(library.get_vocab()))
    return (f"WordPiece training alone (vocab {vocab_size}): lit_lm (reproducible) vs tokenizers' WordPieceTrainer, "
            f"median of {rounds} alternating rounds",
            f"{t_ours:.2f} s vs {t_lib:.2f} s ({t_ours / t_lib:.2f}x)",
            f"{shared:,} of {len(library.get_vocab()):,} tokens shared")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help=f"shared data folder (default: {DEFAULT_DATA})")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--batches", type=int, default=200, help="batches timed per DataModule")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--record", action="store_true",
                   help="append the table to benchmarks/RESULTS.md (a tracked file); default: print only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from lit_lm.data import CausalLMDataModule, MaskedLMDataModule
    from lit_lm.data.pretraining.corpus import prepare_corpus
    from lit_lm.data.pretraining.text import resolve_files
    from lit_lm.data.pretraining.tokenizer_training import train_tokenizer

    files = [args.data_dir / "gutenberg", args.data_dir / "kjv-bible"]
    for f in files:
        if not f.is_dir():
            print(f"error: {f} not found; pass --data-dir", file=sys.stderr)
            return 2
    paths = resolve_files(files)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    rows: list[tuple[str, str, str]] = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    with tempfile.TemporaryDirectory(prefix="lit_lm_bench_") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        tok = train_tokenizer(paths, vocab_size=args.vocab_size, split="document", val_fraction=0.05, seed=42)
        dt = time.perf_counter() - t0
        tok_path = tmp_path / "tokenizer.json"
        tok.save(tok_path)
        rows.append((f"train WordPiece tokenizer (vocab {tok.vocab_size}, read + split included)", f"{dt:.1f} s",
                     f"{mb / dt:.2f} MB/s"))  # fmt: skip
        print(rows[-1])
        rows.append(wordpiece_vs_library(paths, args.vocab_size))
        print(rows[-1])

        from lit_lm.data.pretraining.text import read_corpus

        t0 = time.perf_counter()
        sentences = [s for d in read_corpus(paths).documents() for s in d.sentences]
        t_read = time.perf_counter() - t0
        rows.append(("read + split into documents and sentences (in prepare below)", f"{t_read:.1f} s",
                     f"{mb / t_read:.2f} MB/s"))  # fmt: skip
        print(rows[-1])
        encode = getattr(tok.hf, "encode_batch_fast", tok.hf.encode_batch)
        t0 = time.perf_counter()
        for i in range(0, len(sentences), 4096):
            encode(sentences[i : i + 4096], add_special_tokens=False)
        t_bare = time.perf_counter() - t0
        rows.append(("bare `encode_batch` of the same sentences, already read and split (Rust threads)",
                     f"{t_bare:.1f} s", f"{mb / t_bare:.2f} MB/s"))  # fmt: skip
        print(rows[-1])

        prepared = None
        for workers in (0, 2):
            t0 = time.perf_counter()
            prepared = prepare_corpus(paths, tok, tmp_path / f"corpus{workers}", workers=workers, progress=False)
            dt = time.perf_counter() - t0
            label = "in-process (Rust threads)" if workers == 0 else f"{workers} processes"
            tokens = prepared.num_tokens("train") + prepared.num_tokens("val")
            rows.append((f"prepare corpus, {label}: read, split, tokenize, write", f"{dt:.1f} s",
                         f"{mb / dt:.2f} MB/s, {tokens / dt / 1e3:,.0f}k tokens/s; {t_bare / dt:.2f}x the bare "
                         "encode_batch throughput"))  # fmt: skip
            print(rows[-1])
        assert prepared is not None
        t0 = time.perf_counter()
        again = prepare_corpus(paths, tok, tmp_path / "corpus2", workers=2, progress=False)
        assert again.reused
        rows.append(("prepare corpus again (cache hit)", f"{(time.perf_counter() - t0) * 1e3:.0f} ms", ""))
        print(rows[-1])
        n_train = prepared.num_tokens("train")
        rows.append(("prepared corpus", f"{n_train:,} train / {prepared.num_tokens('val'):,} val tokens",
                     f"{prepared.num_docs('train'):,} train docs, dtype {prepared.dtype.name}"))  # fmt: skip

        cache = tmp_path / "dm"
        (cache / "corpus").mkdir(parents=True)
        # reuse the corpus prepared above: the DataModules' cache layout is <cache_dir>/corpus/<key>
        os.symlink(prepared.path, cache / "corpus" / prepared.path.name)
        B, T = args.batch_size, args.seq_len
        causal = CausalLMDataModule(files=[str(f) for f in files], tokenizer=str(tok_path), block_size=T,
                                    batch_size=B, cache_dir=cache)  # fmt: skip
        causal.setup("fit")
        bps, first = batches_per_second(causal.train_dataloader(), args.batches)
        rows.append((f"CausalLMDataModule train loader (B={B}, T={T}, num_workers=0)", f"{bps:,.0f} batches/s",
                     f"{bps * B * T / 1e6:.2f}M tokens/s"))  # fmt: skip
        print(rows[-1])
        for wwm in (False, True):
            mlm = MaskedLMDataModule(files=[str(f) for f in files], tokenizer=str(tok_path), max_seq_length=T,
                                     batch_size=B, cache_dir=cache, whole_word_masking=wwm)  # fmt: skip
            t0 = time.perf_counter()
            mlm.setup("fit")
            n_inst = len(mlm.train_sampler)
            t_specs = time.perf_counter() - t0
            bps, first = batches_per_second(mlm.train_dataloader(), args.batches)
            rows.append((f"MaskedLMDataModule train loader (B={B}, T<={T}, NSP, {'whole-word' if wwm else 'token'} "
                         "masking, num_workers=0)", f"{bps:,.0f} batches/s",
                         f"{n_inst:,} pair instances per epoch built in {t_specs:.2f} s"))  # fmt: skip
            print(rows[-1])

    header = (
        f"### data_pipeline: Gutenberg (8 novels) + KJV bible, {mb:.1f} MB of text, {date.today()}\n\n"
        f"Machine: {machine()}; {versions()}; 1-minute load average at the start: {load:.1f} (a shared machine: "
        "compare rows of one run only).\n\n"
        "| step | time / rate | throughput |\n|---|---:|---|\n"
    )
    table = header + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    record(table, RESULTS, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
