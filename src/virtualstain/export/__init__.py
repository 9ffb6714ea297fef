"""Export of model bundles to other ecosystems (the BioImage Model Zoo: :mod:`~virtualstain.export.bmz`)."""
