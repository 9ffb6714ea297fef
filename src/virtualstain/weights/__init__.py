"""Model weights shipped inside the package (safetensors + JSON only; see each folder's MODEL_CARD.md)."""
