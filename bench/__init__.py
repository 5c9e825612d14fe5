"""The benchmarks, each run from the checkout's root as `python -m bench.NAME [--help]`:

- `quality`: BANKING77, the LoRA router beside the cheap alternatives on the same examples;
- `recipe_search`: many router training recipes on one sample;
- `few_shot`: ten examples a label, the router's levers read from one trained model, three samples;
- `oos`: CLINC150's out-of-scope queries, each candidate signal's trade-off curve;
- `redaction`: what `SWITCHBOARD_REDACT` changes in real support data, and its detectors' recall;
- `speed`: latency, throughput, start-up, retraining and memory, each phase in its own process
  (with its parts `speed_setup`, `speed_phases`, `speed_bounds`);
- `slack_latency`: a Slack event to the bot's thread reply, `switchboard serve` as its own process;
- `load`: many signed events at once against that process, with idle connections and failing replies;
- `replicas`: bot replicas on one PostgreSQL store against one process on SQLite;
- `shadow_latency`: what a candidate in shadow costs per live message;
- `loop`: the product's whole loop simulated on BANKING77 (with its parts `loop_world`, `loop_trials`).

Each saves its result through `bench.harness.save` into bench/results/<name>.json, in one envelope
(bench, commit, date, arguments, machine, result). Shared code lives in `bench.harness` and
`bench.datasets` only: no bench imports another. `python -m bench.tables` renders the documentation's
tables from those results (`--check` says which are stale).
"""
