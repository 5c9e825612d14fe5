"""What a long-running process serves: the active model swapped in place, the vLLM client, GGUF export."""
