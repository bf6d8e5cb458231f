"""Pretraining data: corpus text (:mod:`.text`), tokenizer training (:mod:`.tokenizer_training`), memory-mapped
prepared corpora (:mod:`.corpus`), the built-in corpus (:mod:`.builtin`), and the DataModules: causal LM windows
(:mod:`.causal_lm`), masked LM sentence pairs and masking (:mod:`.masked_lm`, :mod:`.masking`), on their shared base
(:mod:`.base`); prompts for generation (:mod:`.prompts`)."""
