"""Autofocus (VirFluoNet's AF model): defocused → in-focus fluorescence training pairs (no torch).

``defocus_pairs`` makes the pairs from in-focus images with the optics' defocus PSF (``virtualstain
defocus-pairs``); ``real_pairs`` writes a manifest of measured, registered defocused/in-focus pairs in
the same units.
"""
