"""The retraining pipeline: snapshot data, train a LoRA adapter, evaluate, gate, promote."""
