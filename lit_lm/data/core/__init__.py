"""Machinery every DataModule shares: file reading with file:line errors and atomic writes (:mod:`.io`), tokenizers
and their cache (:mod:`.tokenizer`), splits and hold-outs (:mod:`.splits`), samplers (:mod:`.samplers`) and exact
mid-epoch resume (:mod:`.resume`)."""
