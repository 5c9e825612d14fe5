"""Loopback servers that speak the real services' HTTP APIs (Slack's Web API and Socket Mode, OpenAI's
chat completions, vLLM's completions and LoRA endpoints) and the real bot served against them, for the
tests and the benchmarks.

Never used by the product: this package is not installed (pyproject's setuptools packages leave it out);
tests and benches import it from the checkout's root.
"""
