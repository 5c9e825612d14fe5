"""From a model to a department: the adapter folder, prompt, label scores, head, calibration, the router."""
