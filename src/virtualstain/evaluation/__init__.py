"""Judging predictions against real stains, on arrays (no torch): typed rows and summaries (:mod:`.types`),
per-image scores (:mod:`.scoring`), pooling (:mod:`.summary`), verdicts (:mod:`.verdicts`), study rows
(:mod:`.study`)."""
