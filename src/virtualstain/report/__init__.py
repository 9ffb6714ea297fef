"""Reports of an evaluation and of a study: figures and self-contained HTML pages (no torch)."""
