"""Quantitative phase: retrieval from raw frames (holograms, QLSI, phase shifting, TIE), focus, dry mass.

No torch.
"""
