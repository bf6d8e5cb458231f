"""Tokenizers trained with the ``tokenizers`` library, saved as one ``tokenizer.json``; a BERT ``vocab.txt`` loads
too. Two kinds:

- ``wordpiece`` (BERT): BERT normalizer and pre-tokenizer, ``##`` continuation pieces. It drops line breaks and the
  spacing around punctuation, so ``decode(encode(text))`` is not ``text``.
- ``bpe`` (GPT-2 style byte-level BPE): no normalizer, every byte representable, so ``decode(encode(text)) == text``
  for any text (line breaks, CRLF, tabs, runs of spaces, accents, emoji). Special-token strings inside the text
  (``"[PAD]"``) are encoded as ordinary text, never as the special ids.

lit_lm's own tokenizers put the special tokens at fixed ids::

    [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 [DELIM]=5 [EXTRACT]=6

A BERT ``vocab.txt`` keeps its own ids (``[PAD]=0 [UNK]=100 [CLS]=101 ...``) so that an imported checkpoint's
embedding rows still match; it has no ``[DELIM]``/``[EXTRACT]``, so use the encoder (``[CLS] A [SEP] B [SEP]``)
format with it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from lit_lm.data.core.io import atomic_write, digest
from lit_lm.errors import DataError

log = logging.getLogger(__name__)

PAD, UNK, CLS, SEP, MASK, DELIM, EXTRACT = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DELIM]", "[EXTRACT]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK, DELIM, EXTRACT)
#: The end-of-text token of byte-level BPE tokenizers (GPT-2's): a causal LM corpus puts it after every document.
EOT = "<|endoftext|>"
CONTINUATION_PREFIX = "##"
TokenizerKind = Literal["wordpiece", "bpe"]


def _post_processor(cls_id: int, sep_id: int) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )


def _configure(tk: HFTokenizer, lowercase: bool) -> None:
    tk.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # split on whitespace and punctuation
    tk.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)


def resolve_lowercase(kind: TokenizerKind, lowercase: bool | None) -> bool:
    """Whether a tokenizer of ``kind`` lowercases: ``None`` means the kind's usual choice (WordPiece: uncased, as
    BERT; byte-level BPE: the text as it is). A lowercasing BPE would not be lossless, so it is refused."""
    if lowercase is None:
        return kind == "wordpiece"
    if lowercase and kind == "bpe":
        raise DataError(
            "lowercase=True needs a WordPiece tokenizer: a byte-level BPE keeps the text as it is, so that "
            "decode(encode(text)) == text; leave lowercase unset (or false) or choose tokenizer_kind 'wordpiece'"
        )
    return lowercase


def _is_byte_level(tk: HFTokenizer) -> bool:
    return isinstance(tk.pre_tokenizer, pre_tokenizers.ByteLevel) and isinstance(tk.decoder, decoders.ByteLevel)


def _tokenizer_from_checkpoint(path: Path) -> str:
    """The tokenizer JSON that lit_lm stores in each training checkpoint (under ``lit_lm.tokenizer``), read safely."""
    from lit_lm.serialization import LIT_LM_KEY, load_torch_file

    ckpt = load_torch_file(path, "checkpoint")
    meta = ckpt.get(LIT_LM_KEY) if isinstance(ckpt, dict) else None
    tok = meta.get("tokenizer") if isinstance(meta, dict) else None
    if not isinstance(tok, str) or not tok:
        raise DataError("checkpoint carries no lit_lm tokenizer; pass the tokenizer.json it was trained with", path)
    return tok


_PRIVATE_USE = 0xF0000  # Supplementary Private Use Area-A (65,534 code points), then -B


# BERT's normalizer turns these into spaces, and its pre-tokenizer splits at every space
_BREAKS = str.maketrans("\t\n\r", "   ")
_ASCII_WORDS = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9]")  # every printable ASCII non-alphanumeric is BERT punctuation


def _count_words(tk: HFTokenizer, texts: Iterable[str]) -> Counter[str]:
    """The words of ``texts`` after ``tk``'s BERT normalizer and pre-tokenizer, with their counts.

    The same counts as pre-tokenizing every text, at a fraction of the cost: the normalizer works character by
    character and the pre-tokenizer splits at every space, so a space-separated chunk's words do not depend on its
    neighbours. Each distinct chunk is therefore split once; a printable ASCII chunk by a regex equal to the BERT
    normalizer and pre-tokenizer on it (alphanumeric runs, each other character alone), any other through ``tk``.
    """
    chunks: Counter[str] = Counter()
    for text in texts:
        chunks.update(split_chunks(text, "wordpiece"))
    chunks.pop("", None)
    normalize, pre_tokenize = tk.normalizer.normalize_str, tk.pre_tokenizer.pre_tokenize_str
    lowercase = tk.normalizer.lowercase
    counts: Counter[str] = Counter()
    for chunk, n in chunks.items():
        if chunk.isascii() and chunk.isprintable():
            words = _ASCII_WORDS.findall(chunk.lower() if lowercase else chunk)
        else:
            words = [w for w, _ in pre_tokenize(normalize(chunk))]
        for w in words:
            counts[w] += n
    return counts


def _train_wordpiece(tk: HFTokenizer, texts: Iterable[str], vocab_size: int, min_frequency: int,
                     limit_alphabet: int) -> models.WordPiece:  # fmt: skip
    """WordPiece vocabulary learned as the ``tokenizers`` WordPieceTrainer learns it (BPE merges over the words of
    ``tk``'s normalizer and pre-tokenizer, ``##`` marking pieces inside a word), but the same on every run.

    The library's trainer numbers the ``##`` characters in hash-map order (a new Rust hash seed per training), and
    merges of equal count are then chosen by those numbers: the same text gave vocabularies differing in id order
    and, now and then, in tokens. Here each character inside a word is first written as its own private-use code
    point, so the BPE trainer's alphabet, sorted by code point, fixes every id: characters, then ``##``
    characters (both in code-point order), then merges in the order learned. ``limit_alphabet`` keeps the most
    frequent characters (ties by code point); a word is split at a character dropped that way.
    """
    counts = _count_words(tk, texts)
    chars: Counter[str] = Counter()
    for word, n in counts.items():
        for c in word:
            chars[c] += n
    kept = set(sorted(chars, key=lambda c: (-chars[c], ord(c)))[:limit_alphabet])
    inside = {c for word in counts for c in word[1:]} & kept  # those that get a ## piece
    free = (chr(cp) for cp in range(_PRIVATE_USE, 0x10FFFE) if chr(cp) not in chars and (cp & 0xFFFF) < 0xFFFE)
    inner = {c: next(free) for c in sorted(inside)}  # a character inside a word -> its own code point
    outer = {v: k for k, v in inner.items()}

    def mark(word: str) -> str:
        parts, current = [], []
        for c in word:
            if c not in kept:  # dropped by limit_alphabet: the word is split here
                parts.append("".join(current))
                current = []
            else:
                current.append(inner[c] if current else c)
        parts.append("".join(current))
        return " ".join(p for p in parts if p)

    bpe = HFTokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),  # ids 0..6 in this order
        initial_alphabet=sorted(kept) + [inner[c] for c in sorted(inside)],
        show_progress=False,
    )
    bpe.train_from_iterator(((mark(w) + " ") * n for w, n in sorted(counts.items())), trainer)
    ordered = sorted(bpe.get_vocab().items(), key=lambda kv: kv[1])

    def unmark(token: str) -> str:
        if token in SPECIAL_TOKENS:
            return token
        text = "".join(outer.get(c, c) for c in token)
        return CONTINUATION_PREFIX + text if token[0] in outer else text

    vocab = {unmark(t): i for t, i in ordered}
    return models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX)


_WORD_STARTS = re.compile(r"(?= \S)")  # where GPT-2's pre-tokenizer regex starts a word (" word", " 42", " ,")


def split_chunks(text: str, kind: TokenizerKind) -> list[str]:
    """``text`` cut where its tokenizer's pre-tokenizer always cuts: WordPiece at every space, tab and line break
    (BERT's normalizer makes them spaces); byte-level BPE before each space that precedes a non-space (the GPT-2
    regex gives such a space to the word after it). Python's whitespace includes the regex's, so a character that
    Python calls a non-space is one to the regex too: every cut is a word start (a few, e.g. before ``\\x1c``, are
    not made, which is safe). Joined, the chunks are ``text`` again for BPE; for WordPiece they lose only what the
    normalizer turns into spaces."""
    if kind == "bpe":
        return _WORD_STARTS.split(text)
    return text.translate(_BREAKS).split(" ")


class ChunkEncoder:
    """Encodes many texts without special tokens, as :meth:`Tokenizer.encode_batch` does: all ids one after the other
    and each text's number of ids (as NumPy arrays).

    With a tokenizer whose texts encode chunk by chunk (:attr:`Tokenizer.chunk_kind`: BERT's and GPT-2's kinds),
    each distinct chunk (:func:`split_chunks`: about a word) is encoded once, when first seen, and its ids reused; a
    corpus repeats its words, so this does a fraction of the work. Other tokenizers encode each text. Keep one
    encoder for all the batches of a corpus split. Its memory grows with the distinct chunks (about 250 bytes
    each); past ``max_chunks`` it forgets them and starts again.
    """

    def __init__(self, tokenizer: Tokenizer, max_chunks: int = 1_000_000) -> None:
        self.max_chunks = max_chunks
        self.chunk_kind = tokenizer.chunk_kind
        self._index: dict[str, int] = {}  # chunk -> its row in _ids / _lengths
        self._ids: list[list[int]] = []
        self._lengths: list[int] = []
        # encode_batch_fast (tokenizers >= 0.20) skips the offsets we do not need
        self._encode = getattr(tokenizer.hf, "encode_batch_fast", tokenizer.hf.encode_batch)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.chunk_kind is None:
            ids = [e.ids for e in self._encode(list(texts), add_special_tokens=False)]
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            return np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lengths.sum())), lengths
        split = [split_chunks(t, self.chunk_kind) for t in texts]
        per_text = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
        chunks = list(itertools.chain.from_iterable(split))
        if len(self._index) > self.max_chunks:
            self._index.clear(), self._ids.clear(), self._lengths.clear()
        new = [c for c in dict.fromkeys(chunks) if c not in self._index]
        if new:
            encoded = [e.ids for e in self._encode(new, add_special_tokens=False)]  # first: it may raise
            self._index.update(zip(new, range(len(self._ids), len(self._ids) + len(new)), strict=True))
            self._ids.extend(encoded)
            self._lengths.extend(map(len, encoded))
        rows = list(map(self._index.__getitem__, chunks))
        chunk_lengths = np.fromiter(map(self._lengths.__getitem__, rows), dtype=np.int64, count=len(rows))
        ends = np.concatenate([[0], np.cumsum(chunk_lengths)])[np.cumsum(per_text)]
        lengths = np.diff(ends, prepend=0)
        flat = itertools.chain.from_iterable(map(self._ids.__getitem__, rows))
        return np.fromiter(flat, dtype=np.int64, count=int(chunk_lengths.sum())), lengths


class Tokenizer:
    """A WordPiece or byte-level BPE tokenizer with named special-token ids.

    Build one with :meth:`train_from_texts` or :meth:`from_file` (or :mod:`lit_lm.data.pretraining.tokenizer_training`).
    """

    def __init__(self, tokenizer: HFTokenizer, path: str | None = None) -> None:
        # A Hugging Face tokenizer.json may carry fixed padding/truncation (all-MiniLM-L6-v2's pads every text to 128
        # ids): lit_lm pads per batch and truncates itself, counting what it cuts.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.hf = tokenizer
        self.path = path
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        missing = [t for t in (PAD, UNK, CLS, SEP, MASK) if t not in vocab]
        if missing:
            raise DataError(
                f"tokenizer lacks the special token(s) {missing}; train it with `python -m lit_lm tokenizer` "
                "or use a BERT vocab.txt, which has [PAD] [UNK] [CLS] [SEP] [MASK]",
                path,
            )
        self.pad_id: int = vocab[PAD]
        self.unk_id: int = vocab[UNK]
        self.cls_id: int = vocab[CLS]
        self.sep_id: int = vocab[SEP]
        self.mask_id: int = vocab[MASK]
        self.delim_id: int | None = vocab.get(DELIM)
        self.extract_id: int | None = vocab.get(EXTRACT)
        #: ``<|endoftext|>`` (byte-level BPE tokenizers trained by lit_lm): ends every document of a causal LM corpus.
        self.eot_id: int | None = vocab.get(EOT)
        #: ``bpe`` for a byte-level BPE (lossless), else ``wordpiece``.
        self.kind: TokenizerKind = "bpe" if _is_byte_level(tokenizer) else "wordpiece"
        if self.kind == "bpe":  # "[PAD]" typed in a text is text (not saved in tokenizer.json: set on every load)
            tokenizer.encode_special_tokens = True

    @property
    def lossless(self) -> bool:
        """Whether ``decode(encode(text)) == text`` for every text (byte-level BPE)."""
        return self.kind == "bpe"

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def train_from_texts(
        cls,
        texts: Iterable[str],
        vocab_size: int = 30000,
        lowercase: bool | None = None,
        min_frequency: int = 2,
        limit_alphabet: int = 1000,
        kind: TokenizerKind = "wordpiece",
    ) -> Tokenizer:
        """Train a tokenizer of ``kind`` on an iterable of strings (``lowercase``: see :func:`resolve_lowercase`;
        ``limit_alphabet``: WordPiece only; byte-level BPE keeps the text as it is, so that it round-trips)."""
        if kind not in ("wordpiece", "bpe"):
            raise DataError(f"tokenizer kind must be 'wordpiece' or 'bpe', got {kind!r}")
        lowercase = resolve_lowercase(kind, lowercase)
        if vocab_size <= len(SPECIAL_TOKENS) + (257 if kind == "bpe" else 0):
            n = len(SPECIAL_TOKENS) + (kind == "bpe")
            least = f"the {n} special tokens" + (" and the 256 byte tokens" if kind == "bpe" else "")
            raise DataError(f"vocab_size must be larger than {least}, got {vocab_size}")
        if kind == "wordpiece":
            tk = HFTokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX))
            _configure(tk, lowercase)
            tk.model = _train_wordpiece(tk, texts, vocab_size, min_frequency, limit_alphabet)
            return cls._finish(tk)
        tk = HFTokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[*SPECIAL_TOKENS, EOT],  # ids 0..7 in this order
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
            show_progress=False,
        )
        tk.train_from_iterator(texts, trainer)
        return cls._finish(tk)

    @classmethod
    def _finish(cls, tk: HFTokenizer) -> Tokenizer:
        tk.post_processor = _post_processor(tk.token_to_id(CLS), tk.token_to_id(SEP))
        return cls(tk)

    @classmethod
    def from_file(cls, path: str | Path, lowercase: bool | None = None) -> Tokenizer:
        """Load a ``tokenizer.json`` (ours or any WordPiece one) or a BERT ``vocab.txt``.

        Args:
            path: The file, a lit_lm ``.ckpt`` (which stores the tokenizer it was trained with), or a directory
                holding ``tokenizer.json`` or ``vocab.txt`` (e.g. a Hugging Face checkpoint directory).
            lowercase: For ``vocab.txt`` only: whether the vocabulary is uncased (``None``: yes, as most BERTs).
        """
        p = Path(path)
        if p.is_dir():
            for name in ("tokenizer.json", "vocab.txt"):
                if (p / name).is_file():
                    p = p / name
                    break
            else:
                raise DataError("directory has neither tokenizer.json nor vocab.txt", p)
        if not p.is_file():
            raise DataError("tokenizer file not found; train one with `python -m lit_lm tokenizer`", p)
        if p.suffix == ".ckpt":
            return cls(HFTokenizer.from_str(_tokenizer_from_checkpoint(p)), str(p))
        if p.suffix == ".txt":
            try:
                tk = HFTokenizer(models.WordPiece.from_file(str(p), unk_token=UNK))
            except Exception as e:  # the Rust error names no line; keep its text
                raise DataError(f"not a WordPiece vocab.txt ({e})", p) from None
            _configure(tk, lowercase is not False)
            vocab = tk.get_vocab()
            if CLS in vocab and SEP in vocab:
                tk.post_processor = _post_processor(vocab[CLS], vocab[SEP])
        else:
            try:
                tk = HFTokenizer.from_file(str(p))
            except Exception as e:
                raise DataError(f"not a tokenizer.json that the tokenizers library can read ({e})", p) from None
        return cls(tk, str(p))

    def save(self, path: str | Path) -> None:
        """Write ``tokenizer.json`` atomically (readable by ``tokenizers`` and ``PreTrainedTokenizerFast``)."""
        with atomic_write(path) as tmp:
            self.hf.save(str(tmp))
        self.path = str(path)

    # ----------------------------------------------------------------------------------------------- using
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> list[int]:
        """Ids of all special tokens present (never masked, never predicted as words)."""
        ids = [self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id, self.delim_id, self.extract_id]
        return sorted({i for i in ids if i is not None})

    @property
    def fingerprint(self) -> str:
        """A hash of the full tokenizer definition, for cache keys."""
        return hashlib.sha256(self.hf.to_str().encode()).hexdigest()[:16]

    def difference(self, other: Tokenizer) -> str | None:
        """How ``other`` differs from this tokenizer in what a model sees: the vocabulary (token -> id) and the
        special-token ids; ``None`` when a model trained with one reads the other's ids the same way."""
        ours, theirs = self.hf.get_vocab(with_added_tokens=True), other.hf.get_vocab(with_added_tokens=True)
        if ours != theirs:
            tokens = ours.keys() | theirs.keys()
            differ = sum(1 for token in tokens if ours.get(token) != theirs.get(token))
            sizes = f"vocabularies {len(ours)} / {len(theirs)}"
            return f"{differ} of {len(tokens)} tokens differ in id or presence ({sizes})"
        names = ("pad_id", "unk_id", "cls_id", "sep_id", "mask_id", "delim_id", "extract_id")
        special = [f"{n} {getattr(self, n)} / {getattr(other, n)}" for n in names
                   if getattr(self, n) != getattr(other, n)]  # fmt: skip
        return f"special-token ids differ ({', '.join(special)})" if special else None

    def require_decoder_tokens(self) -> None:
        """Raise unless ``[DELIM]`` and ``[EXTRACT]`` exist (needed by the GPT-1 task format)."""
        if self.delim_id is None or self.extract_id is None:
            raise DataError(
                "the GPT-style task format needs [DELIM] and [EXTRACT] tokens, which this tokenizer lacks "
                "(a BERT vocab.txt has none); use format: encoder, or a tokenizer trained by lit_lm",
                self.path,
            )

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.hf.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Encode many texts in parallel (Rust threads)."""
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    @property
    def chunk_kind(self) -> TokenizerKind | None:
        """How :func:`split_chunks` may cut texts so that a text's ids are its chunks' ids one after the other (and
        :class:`ChunkEncoder` may encode each distinct chunk once): ``"wordpiece"`` for a BERT-style WordPiece (BERT
        normalizer and pre-tokenizer: every space splits), ``"bpe"`` for a GPT-2-style byte-level BPE (no normalizer,
        byte-level pre-tokenizer with its regex and no added prefix space: a space before a non-space starts a
        word, and no added token is looked for in the text); None for other tokenizers, or (WordPiece) with an added
        token that holds a space or takes the spaces around it."""
        hf = self.hf
        if (isinstance(hf.normalizer, normalizers.BertNormalizer)
                and isinstance(hf.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
                and isinstance(hf.model, models.WordPiece)):  # fmt: skip
            kind: TokenizerKind = "wordpiece"
        elif (hf.normalizer is None and isinstance(hf.pre_tokenizer, pre_tokenizers.ByteLevel)
                and hf.pre_tokenizer.use_regex and not hf.pre_tokenizer.add_prefix_space
                and isinstance(hf.model, models.BPE) and not hf.model.dropout):  # fmt: skip
            kind = "bpe"
        else:
            return None
        added = hf.get_added_tokens_decoder().values()
        if kind == "bpe":  # an added token matched in the text ends the regex's text there ("a  <x>": "ĠĠ" one word)
            return kind if hf.encode_special_tokens and all(t.special for t in added) else None
        return None if any(t.lstrip or t.rstrip or any(c.isspace() for c in t.content) for t in added) else kind

    def tokenize(self, text: str) -> list[str]:
        """The token strings (``##`` marks a word continuation)."""
        return self.hf.encode(text, add_special_tokens=False).tokens

    def continuation_mask(self) -> np.ndarray:
        """Boolean array over the vocabulary: True for ``##`` pieces (used by whole-word masking)."""
        if self.kind != "wordpiece":
            raise DataError("whole-word masking needs a WordPiece tokenizer (its ## pieces mark words)", self.path)
        mask = np.zeros(self.vocab_size, dtype=bool)
        for token, idx in self.hf.get_vocab(with_added_tokens=True).items():
            if token.startswith(CONTINUATION_PREFIX) and len(token) > len(CONTINUATION_PREFIX):
                mask[idx] = True
        return mask

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, path={self.path!r})"


# ----------------------------------------------------------------------------------------------- caching
# 2: a BPE learns from the text with its line breaks (units='text'), not from sentences
# 3: WordPiece learned reproducibly (the library trainer's ids, and at ties tokens, varied from run to run)
# 4: byte-level BPE has <|endoftext|> (id 7)
CACHE_FORMAT_VERSION = 4


def train_once(
    key: dict[str, Any], cache_dir: str | Path, train: Callable[[], Tokenizer], kind: TokenizerKind = "wordpiece"
) -> Tokenizer:
    """The tokenizer cached as ``<cache_dir>/tokenizers/<kind>-<digest of key>.json``, trained by ``train()`` (and
    written atomically, so concurrent DDP ranks never read half a file) when it is not there yet."""
    path = Path(cache_dir) / "tokenizers" / f"{kind}-{digest({'v': CACHE_FORMAT_VERSION, **key})}.json"
    if path.is_file():
        return Tokenizer.from_file(path)
    t0 = time.perf_counter()
    tok = train()
    tok.save(path)
    log.info("trained tokenizer (vocab %d) in %.1fs -> %s", tok.vocab_size, time.perf_counter() - t0, path)
    return tok
