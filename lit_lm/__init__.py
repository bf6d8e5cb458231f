"""lit_lm: pretrain and fine-tune GPT-1 and BERT style transformers with Lightning."""

from lit_lm.config import PRESETS, TransformerConfig
from lit_lm.errors import CheckpointError, ConfigError, DataError, LitLMError
from lit_lm.serialization import trust_checkpoints

__version__ = "0.1.0"
__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "LitLMError",
    "TransformerConfig",
    "__version__",
    "trust_checkpoints",
]
