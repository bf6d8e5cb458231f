"""lit_lm: pretrain and fine-tune GPT-1 and BERT style transformers with Lightning."""

from lit_lm.config import PRESETS, ConfigError, TransformerConfig

__version__ = "0.1.0"
__all__ = ["PRESETS", "ConfigError", "TransformerConfig", "__version__"]
