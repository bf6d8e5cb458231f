"""Data: tokenizers, corpora and LightningDataModules for pretraining and fine-tuning.

Three places: :mod:`lit_lm.data.core` (what every DataModule shares: file reading, tokenizers and their cache,
splits, samplers, resume), :mod:`lit_lm.data.pretraining` (corpora, causal LM windows, masked LM pairs and masking)
and :mod:`lit_lm.data.finetuning` (one module per task family, on a shared base). The public names are exported
here: ``from lit_lm.data import NLIDataModule``. Everything stands beside :mod:`lit_lm.model` (no import of it) and
raises :class:`DataError` on bad input.
"""

from lit_lm.data.core.samplers import LengthGroupedSampler, PermutationSampler
from lit_lm.data.core.tokenizer import SPECIAL_TOKENS, Tokenizer
from lit_lm.data.finetuning.builtin import (
    builtin_multiple_choice,
    builtin_nli,
    builtin_similarity,
    builtin_text_classification,
)
from lit_lm.data.finetuning.conll import (
    TaggedSentence,
    builtin_token_classification,
    iob1_to_bio2,
    read_conll,
    read_tagged,
    write_conll,
)
from lit_lm.data.finetuning.encoding import ClassificationCollator, MultipleChoiceCollator, NLICollator
from lit_lm.data.finetuning.examples import (
    NLI_LABELS,
    NLI_LABELS_2WAY,
    MultipleChoiceExample,
    NLIExample,
    TextExample,
)
from lit_lm.data.finetuning.multiple_choice import (
    MultipleChoiceDataModule,
    read_copa_jsonl,
    read_copa_xml,
    read_multiple_choice,
    read_story_cloze,
)
from lit_lm.data.finetuning.nli import NLIDataModule, read_nli
from lit_lm.data.finetuning.question_answering import QuestionAnsweringDataModule
from lit_lm.data.finetuning.registry import TASKS, TaskSpec
from lit_lm.data.finetuning.sentence_pair import SentencePairDataModule
from lit_lm.data.finetuning.squad import QAExample, builtin_question_answering, read_squad
from lit_lm.data.finetuning.tables import read_labelled
from lit_lm.data.finetuning.text_classification import TextClassificationDataModule
from lit_lm.data.finetuning.token_classification import TokenClassificationCollator, TokenClassificationDataModule
from lit_lm.data.pretraining.builtin import builtin_corpus
from lit_lm.data.pretraining.causal_lm import CausalLMDataModule
from lit_lm.data.pretraining.corpus import PreparedCorpus, prepare_corpus
from lit_lm.data.pretraining.masked_lm import MaskedLMDataModule
from lit_lm.data.pretraining.masking import MLMCollator
from lit_lm.data.pretraining.prompts import PromptDataModule
from lit_lm.data.pretraining.text import read_corpus, split_sentences
from lit_lm.errors import DataError

__all__ = [
    "TASKS",
    "TaggedSentence",
    "TokenClassificationCollator",
    "TokenClassificationDataModule",
    "builtin_token_classification",
    "iob1_to_bio2",
    "read_conll",
    "read_tagged",
    "write_conll",
    "QAExample",
    "QuestionAnsweringDataModule",
    "builtin_question_answering",
    "read_squad",
    "CausalLMDataModule",
    "ClassificationCollator",
    "SentencePairDataModule",
    "TaskSpec",
    "TextClassificationDataModule",
    "TextExample",
    "builtin_similarity",
    "builtin_text_classification",
    "read_labelled",
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
