"""Networks (torch): the U-Net family, the registry of named configurations, model bundles."""
