"""Virtual staining: train, predict files, evaluate files, study, demo and nuclei segmentation."""
