"""The base model and LoRA weights: loading, the lean forward pass, merging, shadow deltas."""
