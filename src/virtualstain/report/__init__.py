"""Reports of an evaluation: plain-language verdicts, figures and a self-contained HTML page (no torch)."""
