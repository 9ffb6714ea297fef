"""Super-resolved quantitative phase (DL-SRQPI): simulated training pairs and their judge."""
