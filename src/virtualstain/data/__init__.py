"""Data layer: image files, manifests, splits, normalisation, patches, synthetic data.

Pure numpy/scipy/scikit-image; nothing here imports torch.
"""
