"""What every package may import: the one error type and the settings. It imports nothing of ours."""
