"""Fine-tuning data: one module per task family (reader(s) + dataset + DataModule), on a shared base
(:mod:`.base`: splits, tokenizer, loaders), shared input formats and collators (:mod:`.encoding`), the example types
(:mod:`.examples`) and generated data for every family (:mod:`.builtin`)."""
