"""The benchmark runner: every method x bits x seed on one data set, one results folder.

`run_benchmark` trains each selected method (default: every registered one)
on the same split with the same seeds and budget, through `tfhash.train.fit`,
and writes under `out`:

- `cells/<method>-<bits>bit-seed<seed>/metrics.json`: one finished cell (the
  record of `fit`, with the precision-recall curve); a failed cell leaves
  `error.txt` (traceback) instead. A cell with metrics.json is finished:
  re-running skips it, so an interrupted benchmark resumes.
- `results.json` / `results.csv`: one record per cell, with every metric under
  the keys of metrics.json, `train_seconds` and `encode_items_per_second`;
  failed cells have `status` "error" and the message under `error`.
- `results.md`: mean ± standard deviation over seeds, per method and bits.
- `pr_curve_<bits>bit.png`, `precision_at_n_<bits>bit.png`, `map_vs_bits.png`.

The results files are rewritten after every cell, so a crash or a kill loses
at most the cell in progress.
"""

import csv
import functools
import glob
import io
import json
import os
import time
import traceback

import numpy as np

from tfhash.checks import check_positive_int
from tfhash.configs.common import settings_for, with_overrides
from tfhash.defaults import BIT_GRID, SEEDS
from tfhash.files import writable_folder, write_json, write_text
from tfhash.optimizers import check_learning_rate, check_optimizer
from tfhash.registry import check_model_options, get_method, method_names
from tfhash.train import fit

PRECISION_AT = (10, 20, 50, 100, 200, 500, 1000)
LEADING_COLUMNS = ("method", "bits", "seed", "status", "map_at_all", "map_at_1000", "precision_radius_2")
TABLE_METRICS = (
    ("map_at_all", "mAP@all"),
    ("map_at_1000", "mAP@1000"),
    ("precision_radius_2", "precision within Hamming radius 2"),
    ("euclidean_map_at_all", "mAP@all, Euclidean ground truth (50 nearest neighbours in input space)"),
    ("euclidean_map_at_1000", "mAP@1000, Euclidean ground truth"),
    ("euclidean_precision_radius_2", "precision within Hamming radius 2, Euclidean ground truth (GMAN's)"),
    ("dead_bits", "dead bits (entropy < 0.1 bit) in the database codes"),
    ("train_seconds", "train seconds"),
    ("encode_items_per_second", "encode throughput (items/s)"),
)


def cell_name(method, bits, seed):
    return f"{method}-{bits}bit-seed{seed}"


def cell_config(method, bits, settings, overrides=None, euclidean=False, ties="expected"):
    """The registered config of `method` for `settings` (`tfhash.configs.common.settings_for`) with the
    benchmark's curves and `overrides` ({"train": {...}, "model": {...}}): training settings for deep
    methods, and each model option that the method has (baselines have no training settings)."""
    config = method.get_config(bits, settings)
    config["eval"].update(
        {"precision_at": list(PRECISION_AT), "pr_curve": True, "euclidean": euclidean, "ties": ties}
    )
    overrides = overrides or {}
    return with_overrides(method, config, overrides.get("train"), overrides.get("model"))


def run_benchmark(
    data,
    methods=None,
    bits=BIT_GRID,
    seeds=SEEDS,
    steps=None,
    budget_seconds=None,
    out="runs/bench",
    learning_rate=None,
    batch_size=None,
    model_options=None,
    export=False,
    euclidean=False,
    log=None,
    labelled_per_class=None,
    augment=None,
    ties="expected",
    preset="auto",
    optimizer=None,
):
    """Runs (or resumes) a benchmark; returns the records in grid order.

    Args:
        data: a `tfhash.data.RetrievalData`; every method sees the same split.
        methods: registered names (default: all, deep methods first).
        bits, seeds: the grid; each (method, bits, seed) is one cell.
        steps: training steps of each deep method (default: its preset's).
        learning_rate, batch_size, optimizer: the same for every deep method
            (default: each method's preset), e.g. for an ablation under one
            budget; optimizer is "adam" or "sgd" (with the method's momentum).
        model_options: constructor arguments (e.g. {"hidden_dim": 512}), set
            for every method that has them (a note names the others); a key
            that no method has fails before anything runs.
        budget_seconds: also stop each deep method's training after this
            many seconds. Baselines ignore both budgets.
        out: results folder.
        export: keep each cell's SavedModel / model.npz.
        euclidean: also evaluate under the Euclidean ground truth (K = 50).
        log: progress printer.
        labelled_per_class: items per class of the training subset (`tfhash.train.fit`)
            (default: the data's).
        augment: image augmentation of every image model (e.g. ["crop"]).
        preset: "auto" or "paper": the budgets (`tfhash.configs.common.settings_for`).
        ties: how mAP and precision@N treat items at equal distance
            (`tfhash.evaluation.retrieval_metrics`).
    """
    log = log or functools.partial(print, flush=True)
    methods = [get_method(name) for name in (methods or method_names())]  # unknown names fail here
    bits = [check_positive_int("bits", b) for b in bits]
    for name, values in (("methods", [m.name for m in methods]), ("bits", bits), ("seeds", list(seeds))):
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if repeated:  # a repeated seed would be counted twice in the mean and its spread
            raise ValueError(f"{name} lists {', '.join(map(str, repeated))} more than once; give each once")
    train = {
        "steps": steps,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "augment": augment,
        "optimizer": optimizer,
    }
    train = {key: value for key, value in train.items() if value is not None}
    if optimizer is not None:
        check_optimizer(optimizer)
    for key in ("steps", "batch_size"):
        if key in train:
            check_positive_int(key, train[key])
    if learning_rate is not None:
        check_learning_rate(learning_rate)
    if budget_seconds is not None and not budget_seconds > 0:
        raise ValueError(f"budget_seconds must be positive; received {budget_seconds!r}")
    for name, keys in check_model_options(model_options or {}, methods).items():
        log(f"note: {name} has no model option {', '.join(keys)}; it runs with its own")
    overrides = {"train": train, "model": dict(model_options or {})}
    settings = settings_for(data, preset)
    cells = [(m, b, s) for b in bits for m in methods for s in seeds]
    writable_folder(out, "the bench folder")  # a clear error before any cell, not an OSError later
    os.makedirs(os.path.join(out, "cells"), exist_ok=True)
    records, start, durations = [], time.time(), {}
    for index, (method, b, seed) in enumerate(cells, 1):
        cell_dir = os.path.join(out, "cells", cell_name(method.name, b, seed))
        label = f"[{index}/{len(cells)}] {method.name} {b} bits seed {seed}"
        record = _finished(cell_dir, data, ties)
        if record is None:
            cell_start = time.time()
            options = {
                "budget_seconds": budget_seconds,
                "export": export,
                "labelled_per_class": labelled_per_class,
            }
            resumed = glob.glob(os.path.join(cell_dir, "checkpoints", "epoch-*"))
            log(f"{label}: " + ("resuming from its checkpoint" if resumed else "training") + " ...")
            try:
                record = _run_cell(
                    method, b, seed, data, cell_dir, (settings, overrides), (euclidean, ties), options
                )
            except KeyboardInterrupt as err:
                raise type(err)(
                    f"{' '.join(str(err).split()) or 'interrupted'}; the bench stopped in cell {label}: "
                    "re-run the same command to continue (finished cells are kept)"
                ) from None
            durations.setdefault(method.name, []).append(time.time() - cell_start)
            eta = _eta(durations, [c for c in cells[index:] if not _finished_path(c, out)])
            log(f"{label}: {_summary(record)} (elapsed {time.time() - start:.0f} s, eta {eta:.0f} s)")
        else:
            log(f"{label}: finished earlier, skipped ({_summary(record)})")
        records.append(record)
        write_results(records, out, data)
    return records


def _eta(durations, remaining):
    """Seconds left: each remaining cell costs its method's mean so far (else the overall mean)."""
    overall = np.mean([d for ds in durations.values() for d in ds])
    return sum(np.mean(durations.get(method.name, [overall])) for method, _, _ in remaining)


def _finished_path(cell, out):
    method, b, seed = cell
    return os.path.exists(os.path.join(out, "cells", cell_name(method.name, b, seed), "metrics.json"))


def _finished(cell_dir, data, ties="expected"):
    """The finished cell's record, or None; a cell of another split or tie rule fails (they would mix)."""
    path = os.path.join(cell_dir, "metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        record = json.load(f)
    ran = (
        record.get("split_seed", 0),
        record.get("protocol", "pooled"),
        record.get("ties", "index"),
        record.get("validation", False),
    )
    if ran != (data.split_seed, data.protocol, ties, data.validation):
        split = {True: "the validation split", False: "the query split"}
        raise ValueError(
            f"{cell_dir} was run with split seed {ran[0]}, protocol {ran[1]}, ties={ran[2]} on "
            f"{split[ran[3]]}, not {data.split_seed}, {data.protocol}, ties={ties} on "
            f"{split[data.validation]}; resuming would mix them in one table. Use another --out."
        )
    return record


def _run_cell(method, bits, seed, data, cell_dir, settings, evaluation, fit_options):
    os.makedirs(cell_dir, exist_ok=True)
    error_path = os.path.join(cell_dir, "error.txt")
    try:
        config = cell_config(method, bits, *settings, *evaluation)
        _, record = fit(config, data, cell_dir, seed=seed, verbose=0, **fit_options)
    except Exception as err:  # one method's crash must not lose the others' results
        with open(error_path, "w") as f:
            f.write(traceback.format_exc())
        return {"method": method.name, "bits": bits, "seed": seed, "error": f"{type(err).__name__}: {err}"}
    if os.path.exists(error_path):
        os.remove(error_path)
    return record


def _summary(record):
    if "error" in record:
        return f"FAILED: {record['error']}"
    return f"mAP@all {record['map_at_all']:.4f}, train {record['train_seconds']:.1f} s"


def write_results(records, out, data):
    """Writes results.json, results.csv, results.md and the plots for `records`."""
    write_json(records, os.path.join(out, "results.json"))
    rows = [_flat(r) for r in records]
    columns = [c for c in LEADING_COLUMNS if any(c in row for row in rows)]
    columns += sorted({k for row in rows for k in row} - set(columns))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(os.path.join(out, "results.csv"), text.getvalue())
    write_text(os.path.join(out, "results.md"), markdown_table(records, data))
    plot_results(records, out)


def _flat(record):
    row = {k: v for k, v in record.items() if k not in ("config", "curves", "bits_per_bit")}
    row["status"] = "error" if "error" in record else "ok"
    return row


def _grid(records):
    """methods (in record order), bits (sorted), and {(method, bits): [ok records]}."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    bits = sorted({r["bits"] for r in records})
    ok = {}
    for r in records:
        if "error" not in r:
            ok.setdefault((r["method"], r["bits"]), []).append(r)
    return methods, bits, ok


def markdown_table(records, data):
    """Mean ± standard deviation over seeds, one table per metric; failures listed."""
    methods, bits, ok = _grid(records)
    seeds = sorted({r["seed"] for r in records})
    done = next((r for r in records if "error" not in r), {})
    lines = [
        f"# Benchmark: {data.name}",
        "",
        f"{len(data.query)} "
        + ("validation queries (held out of the database)" if data.validation else "queries")
        + f" x {len(data.database)} database items ({data.protocol} protocol, "
        f"split seed {data.split_seed}), "
        f"{done.get('ground_truth', 'labels')} ground truth, ties at equal distance: "
        f"{done.get('ties', 'index')}, empty queries count "
        f"{done.get('empty_queries', 'zero')}; seeds {seeds}; mean ± standard deviation over seeds "
        "(one value where one seed ran; n < number of seeds: cells that failed or were not run).",
    ]
    for key, title in TABLE_METRICS:
        if not any(key in r for rs in ok.values() for r in rs):
            continue
        lines += ["", f"## {title}", "", "| method | " + " | ".join(f"{b} bits" for b in bits) + " |"]
        lines.append("|---" * (len(bits) + 1) + "|")
        for m in methods:
            lines.append(
                f"| {m} | " + " | ".join(_cell_text(ok.get((m, b), []), key, seeds) for b in bits) + " |"
            )
    failures = [r for r in records if "error" in r]
    if failures:
        lines += ["", "## Failed cells", ""]
        lines += [f"- {r['method']} {r['bits']} bits seed {r['seed']}: {r['error']}" for r in failures]
    return "\n".join(lines) + "\n"


def _cell_text(cell_records, key, seeds):
    values = [r[key] for r in cell_records if r.get(key) is not None]
    if not values:
        return "failed" if not cell_records else "-"
    digits = {"train_seconds": 1, "encode_items_per_second": 0, "dead_bits": 1}.get(key, 3)
    if len(values) == 1:  # one seed: no spread to show (never "± 0.000")
        text = f"{values[0]:,.{digits}f}"
    else:
        text = f"{np.mean(values):,.{digits}f} ± {np.std(values):,.{digits}f}"
    return text if len(values) == len(seeds) else f"{text} (n={len(values)})"


def plot_results(records, out):
    """PR curve and precision@N per bit length, and mAP vs bits, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, bits, ok = _grid(records)
    for b in bits:
        for kind in ("pr_curve", "precision_at_n"):
            fig, ax = plt.subplots(figsize=(5, 4))
            for m in methods:
                cell = ok.get((m, b), [])
                if kind == "pr_curve" and all("curves" in r for r in cell) and cell:
                    recall = np.mean([r["curves"]["pr_recall"] for r in cell], axis=0)
                    precision = np.mean([r["curves"]["pr_precision"] for r in cell], axis=0)
                    ax.plot(recall, precision, marker=".", label=m)
                elif kind == "precision_at_n" and cell:
                    ns = sorted(int(k.rsplit("_", 1)[1]) for k in cell[0] if k.startswith("precision_at_"))
                    values = [np.mean([r[f"precision_at_{n}"] for r in cell]) for n in ns]
                    ax.plot(ns, values, marker="o", label=m)
            if kind == "pr_curve":
                ax.set(
                    xlabel="recall",
                    ylabel="precision",
                    title=f"precision-recall over Hamming radii, {b} bits",
                )
            else:
                ax.set(xscale="log", xlabel="N", ylabel="precision@N", title=f"precision@N, {b} bits")
            _finish(fig, ax, os.path.join(out, f"{kind}_{b}bit.png"))
    fig, ax = plt.subplots(figsize=(5, 4))
    for m in methods:
        xs = [b for b in bits if (m, b) in ok]
        means = [np.mean([r["map_at_all"] for r in ok[(m, b)]]) for b in xs]
        spreads = [np.std([r["map_at_all"] for r in ok[(m, b)]]) for b in xs]
        ax.errorbar(xs, means, yerr=spreads, marker="o", capsize=3, label=m)
    ax.set(xlabel="bits", ylabel="mAP@all", title="mAP@all vs code length", xticks=bits)
    _finish(fig, ax, os.path.join(out, "map_vs_bits.png"))


def _finish(fig, ax, path):
    from tfhash.visualize import save_figure

    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save_figure(fig, path)
