"""Biological readouts (numpy / scipy / scikit-image only; no torch): segmentation, matching, features."""

from .cells import segment_cells_from_junctions
from .features import FEATURES, FeatureAgreement, feature_agreement, object_features
from .matching import MatchResult, match_objects
from .nucleus_size import NucleusSize, SegmentationLengths, estimate_nucleus_diameter, segmentation_lengths
from .segmentation import segment_nuclei
from .whole_cells import CellSegmentation, segment_cells

__all__ = ["FEATURES", "CellSegmentation", "FeatureAgreement", "MatchResult", "NucleusSize", "SegmentationLengths",
           "estimate_nucleus_diameter", "feature_agreement", "match_objects", "object_features", "segment_cells",
           "segment_cells_from_junctions", "segment_nuclei", "segmentation_lengths"]
