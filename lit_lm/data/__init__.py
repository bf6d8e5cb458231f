"""Data: WordPiece tokenizers, corpus preparation, and LightningDataModules for pretraining and fine-tuning.

Everything here stands beside :mod:`lit_lm.model` (no import of it) and raises :class:`DataError` on bad input.
"""

from lit_lm.data.builtin_tasks import builtin_multiple_choice, builtin_nli
from lit_lm.data.builtin_text import builtin_corpus
from lit_lm.data.causal_lm import CausalLMDataModule
from lit_lm.data.corpus import PreparedCorpus, prepare_corpus
from lit_lm.data.examples import NLI_LABELS, NLI_LABELS_2WAY, MultipleChoiceExample, NLIExample
from lit_lm.data.finetuning import MultipleChoiceCollator, NLICollator
from lit_lm.data.masked_lm import MaskedLMDataModule
from lit_lm.data.masking import MLMCollator
from lit_lm.data.multiple_choice import (
    MultipleChoiceDataModule,
    read_copa_jsonl,
    read_copa_xml,
    read_multiple_choice,
    read_story_cloze,
)
from lit_lm.data.nli import NLIDataModule, read_nli
from lit_lm.data.prompts import PromptDataModule
from lit_lm.data.samplers import LengthGroupedSampler, PermutationSampler
from lit_lm.data.text import read_corpus, split_sentences
from lit_lm.data.tokenizer import SPECIAL_TOKENS, Tokenizer
from lit_lm.errors import DataError

__all__ = [
    "CausalLMDataModule",
    "MaskedLMDataModule",
    "MLMCollator",
    "PreparedCorpus",
    "PromptDataModule",
    "builtin_corpus",
    "prepare_corpus",
    "read_corpus",
    "split_sentences",
    "NLI_LABELS",
    "NLI_LABELS_2WAY",
    "SPECIAL_TOKENS",
    "DataError",
    "LengthGroupedSampler",
    "PermutationSampler",
    "MultipleChoiceCollator",
    "MultipleChoiceDataModule",
    "MultipleChoiceExample",
    "NLICollator",
    "NLIDataModule",
    "NLIExample",
    "Tokenizer",
    "builtin_multiple_choice",
    "builtin_nli",
    "read_copa_jsonl",
    "read_copa_xml",
    "read_multiple_choice",
    "read_nli",
    "read_story_cloze",
]
