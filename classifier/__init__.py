"""The classifier, in three layers, each importing only those below it (pyproject.toml's contract):

- `model`: the base model (load, convert, lean forward) and LoRA weights (merge, shadow deltas);
- `routing`: the adapter folder and everything that turns a model into a department: prompt, label
  scoring, head, calibration, metrics, outcomes, and the router itself;
- `serving`: the router a long-running process serves (the registry's active model, swapped in
  place), the vLLM engine client, and the GGUF export.

`baseline_client` (the few-shot GPT-4o baseline's request and prices) stands apart: it loads no model.
Nothing heavy is imported here: torch and transformers load only where a model is built.
"""
