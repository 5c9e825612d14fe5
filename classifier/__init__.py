"""What the bot and the trainer share: settings, the base model, the prompt, classification, metrics.

Nothing heavy is imported here: torch and transformers load only where a model is built.
"""
