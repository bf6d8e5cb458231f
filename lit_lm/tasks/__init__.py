"""LightningModules, one per objective. Each owns a backbone, its heads, the loss, metrics and optimizer."""

from lit_lm.tasks.base import LMTask
from lit_lm.tasks.causal_lm import CausalLM
from lit_lm.tasks.classification import MultipleChoice, SequenceClassification
from lit_lm.tasks.masked_lm import MaskedLM
from lit_lm.tasks.question_answering import QuestionAnswering
from lit_lm.tasks.token_classification import TokenClassification

__all__ = ["CausalLM", "LMTask", "MaskedLM", "MultipleChoice", "QuestionAnswering", "SequenceClassification",
           "TokenClassification"]
