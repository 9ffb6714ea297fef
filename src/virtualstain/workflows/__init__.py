"""Task rooms: one package per product, over the shared training, inference and evaluation layers.

``stain`` (virtual staining), ``phase`` (quantitative phase and dry mass), ``srqpi`` (super-resolved
phase, DL-SRQPI), ``focus`` (autofocus: defocused / in-focus fluorescence pairs). The rooms never import
each other.
"""
