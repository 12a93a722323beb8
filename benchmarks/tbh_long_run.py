"""TBH on mnist for 20,000 steps (10x the headline budget): validation mAP by step, ITQ test figures as lines.

    python benchmarks/tbh_long_run.py train --lr 1e-3 [--steps 20000]   # one run (20-30 min on 2 cores)
    python benchmarks/tbh_long_run.py plot                              # the figure from the runs there are

Each run: TBH, 32 bits, seed 0, protocols.md's mnist split, batch 400, the given learning
rate, validation mAP@all and mAP@1000 every 1,000 steps (`eval_every=1` with 1,000 steps
an epoch; the validation split is carved from the training data, never the queries),
test figures at the end in its metrics.json. Runs go to
benchmarks/results/tbh-mnist-20k/lr<LR>/; `plot` reads their TensorBoard logs and writes
benchmarks/results/tbh-mnist-20k/validation_map.png.
"""

import argparse
import glob
import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "tbh-mnist-20k")
ITQ_TEST = {"map_at_all": 0.438, "map_at_1000": 0.763}  # 32 bits, docs/results.md and protocols.md


def train(args):
    from tfhash.data import load_data
    from tfhash.registry import get_method
    from tfhash.train import fit

    config = get_method("tbh").get_config(32, "mnist")
    config["train"].update(steps=args.steps, steps_per_epoch=1000, eval_every=1, learning_rate=float(args.lr))
    _, record = fit(config, load_data(args.data), os.path.join(OUT, f"lr{args.lr}"), seed=0, verbose=0)
    print(f"lr {args.lr}: test mAP@all {record['map_at_all']:.4f}, mAP@1000 {record['map_at_1000']:.4f}")


def validation_curve(run):
    """{metric: [(step, value)]} from a run's TensorBoard epoch logs (1,000 steps an epoch)."""
    import tensorflow as tf

    curve = {"map_at_all": [], "map_at_1000": []}
    for path in glob.glob(os.path.join(run, "logs", "validation", "events.out.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                name = value.tag.replace("epoch_", "")
                if name in curve:
                    number = (
                        float(tf.make_ndarray(value.tensor))
                        if value.HasField("tensor")
                        else value.simple_value
                    )
                    curve[name].append(((event.step + 1) * 1000, number))
    return {k: sorted(v) for k, v in curve.items()}


def plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in sorted(glob.glob(os.path.join(OUT, "lr*"))):
        curve = validation_curve(run)
        test = {}
        if os.path.isfile(os.path.join(run, "metrics.json")):
            with open(os.path.join(run, "metrics.json")) as f:
                test = json.load(f)
        for ax, metric in zip(axes, ("map_at_all", "map_at_1000"), strict=True):
            if curve[metric]:
                steps, values = zip(*curve[metric], strict=True)
                label = f"TBH {os.path.basename(run)[2:]} (validation)"
                if metric in test:
                    label += f"; test {test[metric]:.3f}"
                ax.plot(steps, values, marker="o", label=label)
    for ax, metric in zip(axes, ("map_at_all", "map_at_1000"), strict=True):
        ax.axhline(ITQ_TEST[metric], color="k", linestyle="--", label=f"ITQ test {ITQ_TEST[metric]:.3f}")
        ax.set_xlabel("training steps")
        ax.set_ylabel(metric.replace("map_at_", "mAP@"))
        ax.legend(fontsize=8)
    fig.suptitle("TBH on mnist, 32 bits, seed 0: validation mAP against steps")
    fig.tight_layout()
    path = os.path.join(OUT, "validation_map.png")
    fig.savefig(path, dpi=100)
    print(path)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("train", "plot"))
    parser.add_argument("--lr", default="1e-3", help="the learning rate, as the run folder's name has it")
    parser.add_argument("--steps", type=int, default=20000)
    shared = os.path.join(os.path.dirname(OUT), "..", "..", "..", "shared", "data", "mnist.npz")
    parser.add_argument("--data", default=os.path.normpath(shared))
    args = parser.parse_args()
    (train if args.command == "train" else plot)(args)


if __name__ == "__main__":
    main()
