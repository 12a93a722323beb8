"""Learning curves of the unsupervised deep methods on CIFAR-10 EfficientNet-Lite0 features (issue 28).

    python benchmarks/feature_curves.py itq                          # ITQ on the same split: the line
    python benchmarks/feature_curves.py run --method tbh [--lr 1e-4] [--minutes 20] [--points 10] [--steps N]
    python benchmarks/feature_curves.py test --method tbh --lr 1e-4 --steps 100000 --checkpoint COPY
                                                                     # a finished run's test figures
    python benchmarks/feature_curves.py queue tbh greedyhash sgh ...   # one run after another
    python benchmarks/feature_curves.py plot                         # curves.png from curves.json
    python benchmarks/feature_curves.py choose                       # each method's feature preset

Each run: 32 bits, seed 0, the pooled protocol of docs/ (1,000 queries, split seed 0),
trained on the *validation* data (`RetrievalData.validation_data()`, what `--validation`
gives: the test queries are never seen), the method's defaults but for the learning
rate when one is given. A short speed probe (the compiled step, timed) sets the steps:
the paper's budget (or `--steps`) or what fits in `--minutes` of training, whichever is fewer, cut
into `--points` epochs; after each epoch the validation evaluation of `fit` (queries
carved from the training data) gives mAP@1000 and mAP@all. Seconds are training
seconds: each epoch from its start to the end of its last step, so evaluation,
checkpoints and the probe are not counted. Points are appended to
benchmarks/results/cifar10-lite0-curves/curves.json as each epoch ends, so a killed run
keeps them and, run again, resumes from its checkpoint (exactly) and continues its curve.
At the end the model is evaluated once on the test queries against the whole database (it
never saw them): `test_map_at_1000` / `test_map_at_all` on the curve's last point (and on
ITQ's), the figures the bench's tables give.
"""

import argparse
import json
import math
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "cifar10-lite0-curves")
CURVES = os.path.join(OUT, "curves.json")
DEFAULT_DATA = os.path.expanduser("~/.cache/tfhash-data/cifar10_lite0.npz")
# ours where a method's defaults fail on features (docs/deep-features.md): GMAN's centred variance loss
OPTIONS = {"gman": {"variance": "centred", "lambda3": 20.0}}
ITQ = {"map_at_1000": None, "map_at_all": None}  # filled by `itq` (validation figures, same split)


def load_curves():
    if os.path.isfile(CURVES):
        with open(CURVES) as f:
            return json.load(f)
    return {}


def save_curves(curves):
    from tfhash.files import write_json

    os.makedirs(OUT, exist_ok=True)
    write_json(curves, CURVES)


def method_config(method, lr, data_path):
    from tfhash.registry import get_method

    config = get_method(method).get_config(32, data_path)
    config["model"].update(OPTIONS.get(method, {}))
    if method == "bgan-ln":  # the neighbour graph is built once and cached beside the runs
        config["model"]["graph"] = os.path.join(OUT, "runs", "graphs")
    if lr is not None:
        config["train"]["learning_rate"] = float(lr)
    return config


def probe_rate(config, data, seconds=3.0):
    """Training steps per second of the compiled step (first call compiles, not timed)."""
    import keras

    from tfhash.configs.common import for_input_kind
    from tfhash.data import batch_dataset
    from tfhash.models import HashingModel
    from tfhash.train import build_model, training_split

    keras.utils.set_random_seed(0)
    model = build_model(config, data.feature_dim, 0, data.image_shape, data.num_classes)
    train, _ = training_split(model, data)
    if type(model).adapt is not HashingModel.adapt:
        model.adapt(train.features)
    batch = for_input_kind(config["train"], model.input_kind)["batch_size"]
    dataset = batch_dataset(train, model.batch_keys, batch, 0)
    model.fit(dataset, steps_per_epoch=5, verbose=0)
    steps = 20
    while True:
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, verbose=0)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or steps >= 20000:
            return steps / elapsed
        steps = int(steps * max(2.0, 1.2 * seconds / max(elapsed, 1e-3)))


def curve_callback(method, lr, offset):
    """A Keras callback: after each epoch's validation evaluation, one point of the curve."""
    import keras

    class CurvePoints(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = offset
            self.epoch_start = self.last_step_end = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = self.last_step_end = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last_step_end = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds += self.last_step_end - self.epoch_start
            logs = logs or {}
            if "val_map_at_1000" not in logs:
                return
            point = {
                "steps": int(self.model.train_steps.numpy()),
                "seconds": round(self.seconds, 2),
                "learning_rate": lr,
                "map_at_1000": round(float(logs["val_map_at_1000"]), 4),
                "map_at_all": round(float(logs["val_map_at_all"]), 4),
            }
            curves = load_curves()
            kept = [p for p in curves.get(method, []) if not _same(p, lr, point["steps"])]
            curves[method] = sorted(kept + [point], key=lambda p: (p["learning_rate"], p["steps"]))
            save_curves(curves)
            print(f"{method} lr {lr:g}: {point}", flush=True)

    return CurvePoints()


def _same(point, lr, steps):
    return math.isclose(point["learning_rate"], lr) and point["steps"] >= steps


def run_setup(args):
    """(validation data, config, learning rate, run folder, curve name) of a curve's run."""
    from tfhash.data import load_data

    data = load_data(args.data).validation_data()
    config = method_config(args.method, args.lr, args.data)
    if args.lr is None and args.lr_factor != 1.0:
        config["train"]["learning_rate"] = float(f"{config['train']['learning_rate'] * args.lr_factor:.3g}")
    lr = float(config["train"]["learning_rate"])
    folder = os.path.join(OUT, "runs", f"{args.method}-lr{lr:g}-{args.steps or 'paper'}")
    return data, config, lr, folder, args.name or args.method  # the curve's name in curves.json


def test_figures(model, config, data_path):
    """A curve's model on the test queries against the whole database (the protocol of the bench's
    tables): it was trained on the validation data, so it never saw a query."""
    from tfhash.data import load_data
    from tfhash.train import evaluate

    metrics = evaluate(model, load_data(data_path), config["eval"])
    return {f"test_{k}": round(float(metrics[k]), 4) for k in ("map_at_1000", "map_at_all")}


def attach_test_figures(key, lr, figures):
    """Adds the test figures to the last point of a curve in curves.json."""
    curves = load_curves()
    last = max((p for p in curves[key] if math.isclose(p["learning_rate"], lr)), key=lambda p: p["steps"])
    last.update(figures)
    save_curves(curves)
    print(f"{key} lr {lr:g}: test figures at {last['steps']:,} steps: {figures}", flush=True)


def run(args):
    from tfhash.train import fit

    data, config, lr, folder, key = run_setup(args)
    plan_path = os.path.join(folder, "plan.json")
    if os.path.isfile(plan_path):  # a stopped run: the same steps, so its checkpoint resumes
        with open(plan_path) as f:
            plan = json.load(f)
    else:
        rate = probe_rate(config, data)
        paper = config["train"]["steps"]
        steps = int(min(args.steps or paper, rate * args.minutes * 60))
        per_epoch = max(1, math.ceil(steps / args.points))
        plan = {"rate": round(rate, 2), "paper_steps": paper, "steps": steps, "steps_per_epoch": per_epoch,
                "minutes": args.minutes}  # fmt: skip
        os.makedirs(folder, exist_ok=True)
        with open(plan_path, "w") as f:
            json.dump(plan, f)
        curves = load_curves()  # a new run at this rate replaces the method's earlier curve at it
        curves[key] = [p for p in curves.get(key, []) if not math.isclose(p["learning_rate"], lr)]
        save_curves(curves)
    print(f"{args.method} lr {lr:g}: {plan}", flush=True)
    config["train"].update(steps=plan["steps"], steps_per_epoch=plan["steps_per_epoch"], eval_every=1)
    done = [p for p in load_curves().get(key, []) if math.isclose(p["learning_rate"], lr)]
    offset = max((p["seconds"] for p in done), default=0.0)
    callback = curve_callback(key, lr, offset)
    budget = plan["minutes"] * 60 * 1.5 + 120  # wall seconds, evaluation included: a safety stop only
    model, record = fit(config, data, folder, seed=0, verbose=0, budget_seconds=budget, export=False,
                    callbacks=[callback])  # fmt: skip
    print(
        f"{args.method} lr {lr:g}: {record['steps']} steps, validation mAP@1000 {record['map_at_1000']:.4f}, "
        f"mAP@all {record['map_at_all']:.4f}",
        flush=True,
    )
    attach_test_figures(key, lr, test_figures(model, config, args.data))


def test(args):
    """The test figures of a finished curve whose last checkpoint was kept (`--checkpoint`, a copy of
    its run folder's checkpoints/epoch-NNNNNN: a finished run removes its own): the model is
    restored by `fit`'s exact resume in a scratch folder and evaluated on the test queries."""
    import shutil
    import tempfile

    from tfhash.train import fit

    data, config, lr, folder, key = run_setup(args)
    with open(os.path.join(folder, "plan.json")) as f:
        plan = json.load(f)
    config["train"].update(steps=plan["steps"], steps_per_epoch=plan["steps_per_epoch"], eval_every=1)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = os.path.join(scratch, "checkpoints", os.path.basename(os.path.normpath(args.checkpoint)))
        shutil.copytree(args.checkpoint, checkpoint)
        model, record = fit(config, data, scratch, seed=0, verbose=0, export=False)
    if record["steps"] != plan["steps"]:
        raise SystemExit(f"{args.checkpoint} is not the end of the run: {record['steps']} of {plan['steps']}")
    attach_test_figures(key, lr, test_figures(model, config, args.data))


def itq(args):
    """ITQ on exactly what the curves' points measure: fitted on the validation data's training part,
    evaluated on the queries `fit` carves from it (`validation_split`, the method's validation_size,
    seed 0) against the rest: the line in the plot. Its figures on the validation data's own
    held-out queries (what each run's metrics.json holds) are kept beside them as `final_*`."""
    from tfhash.data import load_data, validation_split
    from tfhash.evaluation import label_relevance, retrieval_metrics
    from tfhash.train import fit

    data = load_data(args.data).validation_data()
    config = method_config("itq", None, args.data)
    model, record = fit(config, data, os.path.join(OUT, "runs", "itq"), seed=0, verbose=0, export=False)
    size = method_config("tbh", None, args.data)["train"]["validation_size"]  # 1,000 for every method here
    query, database = validation_split(data.train, size, 0)
    relevance = label_relevance(query.labels, database.labels)
    codes = model.encode(query.features), model.encode(database.features)
    carved = retrieval_metrics(*codes, relevance, top_k=(None, 1000), radius=2, ties="expected")
    curves = load_curves()
    curves["itq"] = [
        {
            **test_figures(model, config, args.data),
            "steps": None,
            "seconds": record["train_seconds"],
            "learning_rate": None,
            "map_at_1000": round(float(carved["map_at_1000"]), 4),
            "map_at_all": round(float(carved["map_at_all"]), 4),
            "final_map_at_1000": round(record["map_at_1000"], 4),
            "final_map_at_all": round(record["map_at_all"], 4),
        }
    ]
    save_curves(curves)
    print(f"itq: {curves['itq'][0]}")


def plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = load_curves()
    methods = sorted(m for m in curves if m != "itq")
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    for ax, metric in zip(axes, ("map_at_1000", "map_at_all"), strict=True):
        if "itq" in curves:
            value = curves["itq"][0][metric]
            ax.axhline(value, color="k", linestyle="--", label=f"ITQ {value:.3f}")
        for method in methods:
            default = method_config(method.split(" (")[0], None, DEFAULT_DATA)["train"]["learning_rate"]
            for lr in sorted({p["learning_rate"] for p in curves[method]}):
                line = [p for p in curves[method] if p["learning_rate"] == lr]
                style = "-" if math.isclose(lr, default) else ("--" if lr > default else ":")
                ax.plot([p["seconds"] for p in line], [p[metric] for p in line], marker="o", markersize=3,
                        color=colours[method], linestyle=style, label=f"{method} lr {lr:g}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("training seconds (2 CPU cores)")
        ax.set_ylabel("validation " + metric.replace("map_at_", "mAP@"))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=3, loc="lower left")
    fig.text(0.5, 0.005, "solid: the method's default rate; dashed: 10x it; dotted: a tenth", ha="center",
             fontsize=8)  # fmt: skip
    fig.suptitle(
        "CIFAR-10 EfficientNet-Lite0 features, 32 bits, seed 0: validation mAP against training time"
    )
    fig.tight_layout()
    path = os.path.join(OUT, "curves.png")
    fig.savefig(path, dpi=100)
    print(path)


def table(args):
    """A Markdown table of every curve: its last point, its best mAP@1000 (and where), against ITQ."""
    curves = load_curves()
    itq = curves.get("itq", [{}])[0]
    print(f"ITQ on the same split: mAP@1000 {itq.get('map_at_1000')}, mAP@all {itq.get('map_at_all')}\n")
    head = (
        "method",
        "learning rate",
        "steps",
        "train s",
        "mAP@1000",
        "mAP@all",
        "best mAP@1000 (step)",
        "best mAP@all",
    )
    print("| " + " | ".join(head) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in sorted(m for m in curves if m != "itq"):
        for lr in sorted({p["learning_rate"] for p in curves[method]}):
            line = [p for p in curves[method] if p["learning_rate"] == lr]
            last, best = line[-1], max(line, key=lambda p: p["map_at_1000"])
            mark = {k: "**" if last[k] > itq.get(k, 1) else "" for k in ("map_at_1000", "map_at_all")}
            print(f"| {method} | {lr:g} | {last['steps']:,} | {last['seconds']:,.0f} | "
                  f"{mark['map_at_1000']}{last['map_at_1000']:.3f}{mark['map_at_1000']} | "
                  f"{mark['map_at_all']}{last['map_at_all']:.3f}{mark['map_at_all']} | "
                  f"{best['map_at_1000']:.3f} ({best['steps']:,}) | "
                  f"{max(p['map_at_all'] for p in line):.3f} |")  # fmt: skip


TOLERANCE = 0.005  # validation mAP@1000 within this of a method's best counts as converged
PRESET_SECONDS = 1200.0  # a default budget trains in at most the curves' 20 minutes on 2 cores
KEEPS_PAPER = ("gman",)  # its best point is the end of L2 pre-training: no budget of its helps


def choices(curves):
    """{method: {"best", "pick", "rate", "longer"}}: each method's feature-source budget. Over all
    its curves (every learning rate, the long runs too), `best` is the point of the highest
    validation mAP@1000; `pick` the point with the fewest training seconds within `TOLERANCE` of it
    among those of at most `PRESET_SECONDS` (where none is, the best of those); `rate` the steps
    per second of the pick's learning rate over its whole curves; `longer` True where no point
    within the cap comes within `TOLERANCE` of the best. The configs' "features" presets hold
    these (tests/test_docs.py checks it)."""
    by_method = {}
    for name, points in curves.items():
        if name != "itq":
            by_method.setdefault(name.split(" (")[0], []).extend(points)
    chosen = {}
    for method, points in sorted(by_method.items()):
        best = max(points, key=lambda p: p["map_at_1000"])
        within = [p for p in points if p["seconds"] <= PRESET_SECONDS]
        near = [p for p in within if p["map_at_1000"] >= best["map_at_1000"] - TOLERANCE]
        pick = min(near, key=lambda p: p["seconds"]) if near else max(within, key=lambda p: p["map_at_1000"])
        same = [p for p in points if p["learning_rate"] == pick["learning_rate"]]
        rate = max(p["steps"] for p in same) / max(p["seconds"] for p in same)  # its whole curve
        chosen[method] = {"best": best, "pick": pick, "rate": rate, "longer": not near}
    return chosen


def choose(args):
    """Prints `choices` as the table of docs/reproduction.md."""
    print(
        "| method | best mAP@1000 (lr, steps) | chosen: lr | steps | train s | mAP@1000 | mAP@all | steps/s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    notes = []
    for method, c in choices(load_curves()).items():
        best, pick = c["best"], c["pick"]
        if method in KEEPS_PAPER:
            print(f"| {method} | {best['map_at_1000']:.3f} ({best['learning_rate']:g}, {best['steps']:,}) | "
                  f"(the paper's) | | | | | {c['rate']:.1f} |")  # fmt: skip
            continue
        print(f"| {method} | {best['map_at_1000']:.3f} ({best['learning_rate']:g}, {best['steps']:,}) | "
              f"{pick['learning_rate']:g} | {pick['steps']:,} | {pick['seconds']:,.0f} | "
              f"{pick['map_at_1000']:.3f} | {pick['map_at_all']:.3f} | {c['rate']:.1f} |")  # fmt: skip
        if c["longer"]:
            figures = f"{best['map_at_1000']:.3f} / {best['map_at_all']:.3f} after {best['seconds']:,.0f} s"
            notes.append(f"{method}: its best ({figures}) is past the {PRESET_SECONDS:,.0f} s of a default")
    for note in notes:
        print(note)


def queue(args):
    """Runs each method (at its default rate) in its own process, one after another."""
    import subprocess
    import sys

    for method in args.methods:
        argv = [sys.executable, __file__, "run", "--method", method, "--data", args.data,
                "--minutes", str(args.minutes), "--points", str(args.points)]  # fmt: skip
        if args.lr:
            argv += ["--lr", args.lr]
        if args.steps:
            argv += ["--steps", str(args.steps)]
        argv += ["--lr-factor", str(args.lr_factor)]
        subprocess.run(argv, check=False)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("run", "test", "queue", "itq", "plot", "table", "choose"))
    parser.add_argument("methods", nargs="*", help="for queue: the methods, in order")
    parser.add_argument("--method")
    parser.add_argument("--lr", default=None, help="learning rate (default: the method's)")
    parser.add_argument("--lr-factor", type=float, default=1.0, help="without --lr: the default rate x this")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None,
                        help="most steps (default: the paper's budget); --minutes caps them too")  # fmt: skip
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--name", help="the curve's name in curves.json (default: the method's)")
    parser.add_argument("--checkpoint", help="for test: a copy of a finished run's last checkpoint folder")
    args = parser.parse_args()
    {"run": run, "test": test, "queue": queue, "itq": itq, "plot": plot, "table": table, "choose": choose}[
        args.command
    ](args)


if __name__ == "__main__":
    main()
