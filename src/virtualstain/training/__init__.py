"""Training (torch + Lightning): the validated config, the Lightning module and datasets, losses, the fit loop."""
