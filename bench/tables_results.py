"""The tables of the model and serving benches: replicas, quality recipes, the few-shot race, out of scope
and speed, each rendered from its bench/results files.

Every figure is read from a result. Labels of rows and columns are the renderer's own words; the speed
table's targets are the product's stated targets, constants here. Bold follows a rule stated at each
renderer, so it moves with the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bench.harness import RESULTS, load_result
from bench.table_cells import bold, fixed, markdown, percent


def load() -> str:
    """Replicas against one process (bench/results/replicas.json), in the bench's order of configurations."""
    rows = []
    for name, run in load_result("replicas")["configurations"].items():
        if "killed_after_messages" in run:
            name = f"{name.removesuffix(' mid-burst')} (SIGKILL) after {run['killed_after_messages']} messages"
        reply = run["event_to_reply_ms"]
        rows.append([name, fixed(run["answered_per_s"], 1),
                     f"{fixed(reply['median'] / 1000, 1)} s / {fixed(reply['p95'] / 1000, 1)} s",
                     fixed(run["acknowledged_per_s"]), str(run["duplicates"]), str(run["lost"])])
    return markdown(["", "answered / s", "event → reply, median / p95", "acknowledged / s", "duplicates", "lost"],
                    rows)


RECIPE_ROWS = (  # (row, the recipe of each sample seed's file): the first recipe was the defaults then
    ("LoRA router, first recipe", [{}, {"batch_size": 16, "epochs": 3, "min_steps": 0}]),
    ("LoRA router, default recipe", [{"batch_size": 2, "epochs": 6}, {"batch_size": 2, "epochs": 6}]),
)


def quality_recipes() -> str:
    """BANKING77 departments, 10 a department, seeds 0 and 1 (recipes-departments-10-per-class-seed*.json).
    The last (default) recipe's row is bold, and its cells where it is the column's most accurate."""
    seeds = [load_result(f"recipes-departments-10-per-class-seed{seed}") for seed in (0, 1)]
    rows: list[tuple[str, list[dict[str, float]]]] = [
        ("TF-IDF SVM", [s["alternatives"]["tfidf_svm"] for s in seeds]),
        ("MiniLM-L6 embeddings + logistic regression", [s["alternatives"]["minilm_logreg"] for s in seeds])]
    for label, recipes in RECIPE_ROWS:
        explicit = next(r for r in recipes if "batch_size" in r)
        steps = math.ceil(seeds[0]["train_examples"] / explicit["batch_size"]) * explicit["epochs"]
        runs = [next(line for line in s["recipes"] if line["recipe"] == recipe) for s, recipe in zip(
            seeds, recipes, strict=True)]
        rows.append((f"{label} (batches of {explicit['batch_size']}, {explicit['epochs']} epochs: {steps} steps)",
                     runs))
    best = [max(scores[i]["accuracy"] for _, scores in rows) for i in range(len(seeds))]
    default = rows[-1][0]
    return markdown(["model", *(f"sample seed {s['seed']}" for s in seeds)], [
        [bold(label, label == default), *(bold(f"{percent(score['accuracy'])}% / {fixed(score['macro_f1'], 3)}",
                                               label == default and score["accuracy"] == best[i])
                                          for i, score in enumerate(scores))]
        for label, scores in rows])


FEW_SHOT_ROWS = (("TF-IDF SVM", "tfidf_svm"), ("MiniLM-L6 + logistic regression", "minilm_logreg"),
                 ("router, label scores alone", "label_scores"), ("router, the head alone", "head"),
                 ("router, the head at 10x its regularisation (C=0.1)", "head_c0.1"),
                 ("router, the head at a tenth of it (C=10)", "head_c10"),
                 ("router, the two averaged 50/50 (served before)", "router_even"),
                 ("router without the vote: label scores and head at the fold's share", "router_without_vote"),
                 ("**router as served: mixed at the fold's shares**", "router"),
                 ("router's states, k-NN vote of the labelled examples alone", "knn"),
                 ("router + k-NN vote of the labelled examples", "router+knn"),
                 ("router + MiniLM-L6 + LR, averaged", "router+minilm_logreg"))
FEW_SHOT_RUNS = ("departments-10-per-class", "domains-10-per-class", "intents-10-per-class", "departments-50-per-class",
                 "departments-full")
DATA_SETS = {"departments": ("BANKING77", "departments"), "intents": ("BANKING77", "intents"),
             "domains": ("CLINC150", "domains")}


def few_shot() -> str:
    """Each seed's accuracy, then the mean accuracy / macro-F1 (few-shot-<task>-<size>.json), then the
    shares each seed's fold chose (a run from before the vote had none: 0) and the router's scoring time.
    Bold: the most accurate mean of each column among single models (an ensemble, `router+...`, is not one)."""
    tasks = [load_result(f"few-shot-{run}") for run in FEW_SHOT_RUNS]
    for task in tasks:  # a run from before the vote served without it
        for scores in (task["mean"], *(run["results"] for run in task["runs"])):
            scores.setdefault("router_without_vote", scores["router"])

    def size(t: dict[str, Any]) -> str:
        full = t["size"] == "full"
        return f"all {t['runs'][0]['train_examples']:,}" if full else f"{t['size'].split('-')[0]} a label"

    header = [""] + [f"{DATA_SETS[t['task']][0]}, {t['labels']} {DATA_SETS[t['task']][1]}, {size(t)}, "
                     f"{t['test_queries']:,} queries, {'seeds' if len(t['seeds']) > 1 else 'seed'} "
                     f"{', '.join(map(str, t['seeds']))}" for t in tasks]
    best = [max(t["mean"][key]["accuracy"] for _, key in FEW_SHOT_ROWS if "+" not in key) for t in tasks]

    def cell(task: dict[str, Any], key: str, best: float) -> str:
        seeds = " / ".join(percent(run["results"][key]["accuracy"]) for run in task["runs"])
        mean = task["mean"][key]
        return f"{seeds}: " + bold(f"{percent(mean['accuracy'])}% / {fixed(mean['macro_f1'], 3)}",
                                   "+" not in key and mean["accuracy"] == best)

    def about(task: dict[str, Any], key: str, digits: int) -> str:
        return " / ".join(fixed(run["router"][key], digits) for run in task["runs"])

    return markdown(header, [[label, *(cell(t, key, b) for t, b in zip(tasks, best, strict=True))]
                             for label, key in FEW_SHOT_ROWS]
                    + [["the shares the fold chose, head, vote (fold size; the vote needs 300)",
                        *(" / ".join(f"{fixed(r['router']['head_weight'], 1)}, "
                                     f"{fixed(r['router'].get('vote_weight', 0.0), 1)} ({r['router']['fold']})"
                                     for r in t["runs"]) for t in tasks)],
                       ["router's scoring, ms a query in batches of 32", *(about(t, "score_ms_per_query", 0)
                                                                           for t in tasks)]])


OOS_CONTENDERS = ("lora_router", "minilm_logreg", "minilm_finetuned", "tfidf_svm")


def oos() -> str:
    """Every oos-*.json, by size then seed. The router's signal is the one it serves (`product`); a run made
    before it was served has the same pair by ranks (`knn+msp_t`), marked †. Bold: the router's figure where
    it beats every alternative, as served (never a † figure)."""
    runs = sorted((load_result(path.stem) for path in RESULTS.glob("oos-*.json")),
                  key=lambda r: (int(r["size"].split("-")[0]), r["seed"]))
    header = [""]
    for i, run in enumerate(runs):
        size = f"{run['size'].split('-')[0]} per department, " if i == 0 or runs[i - 1]["size"] != run["size"] else ""
        header.append(f"{size}seed {run['seed']}")

    def contenders(run: dict[str, Any], read: Callable[[dict[str, Any]], float], show: Callable[[float], str],
                   unit: str = "") -> str:
        router = run["results"]["lora_router"]
        served = "product" in router
        values = [read(router["product" if served else "knn+msp_t"])]
        values += [read(run["results"][name]["max_probability"]) for name in OOS_CONTENDERS[1:]]
        first = bold(show(values[0]) + ("" if served else "†"), served and values[0] > max(values[1:]))
        return " / ".join([first, *map(show, values[1:])]) + unit

    def accuracy(run: dict[str, Any]) -> str:
        values = [run["results"][name]["in_scope_accuracy"] for name in OOS_CONTENDERS]
        return " / ".join([bold(percent(values[0]), values[0] > max(values[1:])), *map(percent, values[1:])]) + "%"

    def rule(shares: dict[str, float]) -> str:
        return ", ".join(percent(shares[k]) for k in ("out_of_scope_caught", "in_scope_routed_right",
                                                       "in_scope_misrouted")) + "%"

    return markdown(header, [
        ["in-scope accuracy: router / MiniLM+LR / fine-tuned MiniLM / TF-IDF SVM", *map(accuracy, runs)],
        ["out-of-scope AUROC: router (k-NN + doubt, as served) / MiniLM+LR / fine-tuned / TF-IDF",
         *(contenders(r, lambda c: c["auroc"], lambda v: fixed(v, 3)) for r in runs)],
        ["in-scope routed right where 80% of out-of-scope is caught: router / MiniLM+LR / fine-tuned / TF-IDF",
         *(contenders(r, lambda c: c["in_scope_right_at_80_caught"], percent, "%") for r in runs)],
        ["the bot's rule at defaults: out-of-scope caught, in-scope routed right, misrouted (router)",
         *(rule(r["results"]["lora_router"]["bot_rule"]) for r in runs)],
        ["the same rule on MiniLM+LR's probabilities",
         *(rule(r["results"]["minilm_logreg"]["bot_rule"]) for r in runs)],
    ])


SINGLE_QUERY_TARGET_MS, STARTUP_TARGET_S, RETRAIN_TARGET_S, SERVING_MEMORY_TARGET_GB = 30, 5, 300, 1.5


def speed() -> str:
    """speed-cpu-embedded.json, with the 10,000-example retraining of speed-cpu-embedded-train.json. GB: the
    JSON's MB (MiB) over 1000."""
    result, long_run = load_result("speed-cpu-embedded"), load_result("speed-cpu-embedded-train")["train"][0]
    serve, reference, startup = result["serve"], result["reference_tfidf_svm"], result["startup"]["classify_command_s"]
    single, train, memory = serve["single_query_ms"], result["train"][0], serve["memory_single_queries"]

    def verdict(met: bool) -> str:
        return "met" if met else "missed"

    def gb(mb: float, digits: int = 1) -> str:
        return f"{fixed(mb / 1000, digits)} GB"

    return markdown(["", "target", "measured"], [
        ["one query at a time, median (p95)", f"under {SINGLE_QUERY_TARGET_MS} ms",
         f"**{fixed(single['median'], 1)} ms** ({fixed(single['p95'], 1)}): "
         f"{verdict(single['median'] < SINGLE_QUERY_TARGET_MS)}; "
         f"TF-IDF {fixed(reference['single_query_ms']['median'], 1)} ms"],
        [f"batched throughput (batches of {serve['batched']['batch_size']})", "",
         f"{fixed(serve['batched']['queries_per_s'])} queries/s; TF-IDF {fixed(reference['batched_queries_per_s'])}"],
        ["start-up: `switchboard classify` from process start, cache warm", f"under {STARTUP_TARGET_S} s",
         f"**{fixed(startup['median'], 1)} s** (first run {fixed(startup['first'], 1)} s): "
         f"{verdict(startup['median'] < STARTUP_TARGET_S)}"],
        [f"retraining, {train['examples']:,} examples x {train['epochs']:g} epochs",
         f"under {RETRAIN_TARGET_S // 60} minutes",
         f"**{fixed(train['wall_s'])} s** ({fixed(train['examples_per_s'], 1)} examples/s, {train['tokens_per_s']} "
         f"tokens/s): {verdict(train['wall_s'] < RETRAIN_TARGET_S)}"],
        ["resident memory serving single queries", f"under {SERVING_MEMORY_TARGET_GB} GB",
         f"**{gb(memory['rss_now_mb'], 2)}** (peak {gb(memory['peak_rss_mb'], 2)} while loading): "
         f"{verdict(memory['rss_now_mb'] / 1000 < SERVING_MEMORY_TARGET_GB)}"],
        [f"peak memory training {train['examples']:,} examples", "", gb(train["peak_rss_mb"])],
        [f"retraining, {long_run['examples']:,} examples x {long_run['epochs']:g} epochs (`--phases train "
         f"--train-sizes {long_run['examples']}`)", "",
         f"{fixed(long_run['wall_s'])} s, {fixed(long_run['wall_s'] / 60)} minutes "
         f"({fixed(long_run['examples_per_s'], 1)} examples/s, {long_run['tokens_per_s']} tokens/s), "
         f"peak {gb(long_run['peak_rss_mb'])}; "
         "`bench/results/speed-cpu-embedded-train.json`"],
    ])


TABLES: dict[str, Callable[[], str]] = {"load": load, "quality-recipes": quality_recipes, "few-shot": few_shot,
                                         "oos": oos, "speed": speed}
