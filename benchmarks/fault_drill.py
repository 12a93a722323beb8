"""Kill a training run again and again; count exact resumes, lost runs, and compare with an unbroken run.

    python benchmarks/fault_drill.py [--kills 20] [--seed 0] [--work DIR] [--json PATH]

Runs `python -m tfhash train tbh --data digits --steps 600 --steps-per-epoch 50
--seed 0 --out DIR` once uninterrupted (the reference, in WORK/reference), then
N times on WORK/drill, each time killed with SIGKILL in one window. The
windows come in rounds, one round per run: the training windows twice each in
a random order (--seed), then evaluate, export and metrics in the order a run
reaches them, so that every kill finds its window:

- training: no pause; killed after a uniform delay between --min-delay
  seconds and the reference run's wall time;
- checkpoint-write, evaluate, export, metrics: TFHASH_FAULT_PAUSE=NAME:2
  (`tfhash.lifecycle.fault_point`), killed uniform(0, 1.5) s after the
  process prints `fault-point NAME`.

An attempt that was not killed because the run ended first is recorded as
such; a run that finishes during the drill is compared with the reference
(codes of the digits features) and its folder removed, and the drill goes on
with a fresh run. An attempt resumes when the folder held a checkpoint and
the run prints "resuming from the checkpoint"; it is lost when it exits with
an error, hangs, or trains again an epoch that a readable checkpoint held
(from epoch 1: it started over). At the end the drill's run is completed without a kill and its export
and mAP@all are compared with the reference's.

Prints one line per attempt (window, outcome, the checkpoint step resumed
from, seconds) and a summary; --json writes the summary and the attempts.
Exits with status 1 when a run was lost or the codes differ. Each attempt's
stdout / stderr are kept in WORK/logs (WORK is removed at the end when it was
a temporary folder and nothing went wrong).
"""

import argparse
import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

WINDOWS = ("training", "checkpoint-write", "evaluate", "export", "metrics")
TRAINING_WINDOWS = ("training", "checkpoint-write")
RESUME = re.compile(r"resuming from the checkpoint of epoch (\d+) \(step ([\d,]+)\)")
EPOCH = re.compile(r"^Epoch (\d+)/\d+", re.MULTILINE)
PAUSE_SECONDS = 2.0
KILL_WITHIN = 1.5


def train_command(args, out):
    return [
        sys.executable, "-m", "tfhash", "train", "tbh", "--data", "digits",
        "--steps", str(args.steps), "--steps-per-epoch", str(args.steps_per_epoch),
        "--seed", str(args.model_seed), "--out", out,
    ]  # fmt: skip


def checkpoints(out):
    """(epoch, readable) of each checkpoint folder in `out`, newest first."""
    found = []
    for path in sorted(glob.glob(os.path.join(out, "checkpoints", "epoch-[0-9]*")), reverse=True):
        found.append((int(os.path.basename(path).split("-")[1]), readable(path)))
    return found


def readable(path):
    """Whether a checkpoint folder's state.json and weights read back whole (as tfhash checks them)."""
    import h5py

    try:
        with open(os.path.join(path, "state.json")) as f:
            if "epoch" not in json.load(f):
                return False
        with h5py.File(os.path.join(path, "model.weights.h5"), "r") as f:
            f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except Exception:
        return False
    return True


def complete(out):
    return os.path.exists(os.path.join(out, "metrics.json")) and not checkpoints(out)


class Attempt:
    """One subprocess run of the training command, optionally killed in a window."""

    def __init__(self, command, log_prefix, pause=None):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        env.pop("TFHASH_FAULT_PAUSE", None)
        if pause is not None:
            env["TFHASH_FAULT_PAUSE"] = f"{pause}:{PAUSE_SECONDS:g}"
        self.marker = f"fault-point {pause}"
        self.reached = threading.Event()
        self.stdout_path, self.stderr_path = log_prefix + ".out", log_prefix + ".err"
        self.start = time.perf_counter()
        self.stdout = open(self.stdout_path, "w")
        self.process = subprocess.Popen(
            command, stdout=self.stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True
        )
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()
        self.killed = False

    def _read_stderr(self):
        with open(self.stderr_path, "w") as log:
            for line in self.process.stderr:
                log.write(line)
                log.flush()
                if line.strip() == self.marker:
                    self.reached.set()

    def wait(self, timeout):
        """The exit status, or None when still running after `timeout` seconds."""
        try:
            return self.process.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def wait_for_marker(self, timeout):
        """True once the fault point is reached; False when the process ended first or `timeout` passed."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.reached.wait(0.1):
                return True
            if self.process.poll() is not None:
                return self.reached.is_set()
        return False

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.killed = True

    def finish(self):
        """Waits for the process and the stderr reader; returns (exit status, seconds, stdout text)."""
        status = self.process.wait()
        self.reader.join()
        self.stdout.close()
        with open(self.stdout_path, errors="replace") as f:
            text = f.read()
        return status, time.perf_counter() - self.start, text


def run_attempt(args, out, window, rng, reference_seconds, log_prefix):
    """Runs one attempt on `out` with kill window `window` (None: run to the end); returns its record."""
    before = checkpoints(out)
    good = [epoch for epoch, ok in before if ok]
    attempt = Attempt(train_command(args, out), log_prefix, None if window in (None, "training") else window)
    limit = max(args.hang_factor * reference_seconds, 300.0)
    hung = False
    kill_note = ""
    try:
        if window == "training":
            delay = rng.uniform(args.min_delay, max(args.min_delay, reference_seconds))
            kill_note = f"after {delay:.1f} s"
            if attempt.wait(delay) is None:
                attempt.kill()
        elif window is not None:
            if attempt.wait_for_marker(limit):
                delay = rng.uniform(0.0, KILL_WITHIN)
                kill_note = f"{delay:.2f} s into the pause"
                time.sleep(delay)
                attempt.kill()
        if attempt.wait(limit) is None:
            hung = True
            attempt.kill()
    finally:
        if attempt.process.poll() is None:  # the drill itself was interrupted
            attempt.process.kill()
        status, seconds, text = attempt.finish()
    resumed = RESUME.search(text)
    epochs = [int(e) for e in EPOCH.findall(text)]
    first_epoch = epochs[0] if epochs else None
    # training again an epoch that a readable checkpoint already held (from epoch 1: started over)
    retrained = bool(good) and first_epoch is not None and first_epoch <= good[0]
    if hung:
        outcome = "hung"
    elif attempt.killed:
        outcome = "killed"
    elif status == 0:
        outcome = "finished" if os.path.exists(os.path.join(out, "metrics.json")) else "no metrics"
    else:
        outcome = f"error {status}"
    lost = outcome not in ("killed", "finished") or retrained
    return {
        "window": window or "none",
        "outcome": outcome,
        "kill": kill_note if attempt.killed else "",
        "checkpoint_before": before[0][0] if before else None,
        "readable_before": good[0] if good else None,
        "resumed_epoch": int(resumed.group(1)) if resumed else None,
        "resumed_step": int(resumed.group(2).replace(",", "")) if resumed else None,
        "first_epoch_trained": first_epoch,
        "resume": bool(before) and resumed is not None,
        "retrained": retrained,
        "lost": lost,
        "exit_status": status,
        "seconds": round(seconds, 1),
        "log": log_prefix,
    }


def encode(export, features):
    from tfhash.cli import quiet_tensorflow

    quiet_tensorflow()  # no start-up lines in the drill's own output
    import tensorflow as tf

    signature = tf.saved_model.load(export).signatures["serving_default"]
    return signature(features=tf.constant(features))["codes"].numpy()


def digits_features():
    from sklearn.datasets import load_digits

    return (load_digits().data / 16).astype(np.float32)


def map_at_all(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)["map_at_all"]


def print_attempt(number, record):
    resumed = "-" if record["resumed_step"] is None else f"{record['resumed_step']:,}"
    epoch = "-" if record["resumed_epoch"] is None else str(record["resumed_epoch"])
    notes = [record["kill"]] if record["kill"] else []
    if record["retrained"]:
        notes.append(
            f"TRAINED FROM EPOCH {record['first_epoch_trained']} with the checkpoint of epoch "
            f"{record['readable_before']} there"
        )
    if record.get("completed"):
        notes.append("run complete, codes " + ("= reference" if record["codes_equal"] else "DIFFER"))
    if record["lost"]:
        notes.append(f"LOST (logs: {record['log']}.out, .err)")
    print(
        f"{number:>7}  {record['window']:16} {record['outcome']:10} {epoch:>10} {resumed:>9} "
        f"{record['seconds']:7.1f}  {'; '.join(notes)}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20, help="kill attempts (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the windows and delays")
    parser.add_argument("--work", help="folder of the runs and logs (default: a new temporary folder)")
    parser.add_argument("--json", help="write the summary and the attempts to this file")
    parser.add_argument("--windows", nargs="+", choices=WINDOWS, default=list(WINDOWS))
    parser.add_argument("--min-delay", type=float, default=3.0, help="earliest kill in the training window")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--model-seed", type=int, default=0, help="the run's --seed")
    parser.add_argument(
        "--hang-factor", type=float, default=10.0, help="an attempt longer than this x the reference hangs"
    )
    args = parser.parse_args()
    temporary = args.work is None
    work = args.work or tempfile.mkdtemp(prefix="fault-drill-")
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    reference, drill = os.path.join(work, "reference"), os.path.join(work, "drill")
    print(f"work folder: {work}")
    print("command:", " ".join(train_command(args, "OUT")[1:]), flush=True)

    shutil.rmtree(reference, ignore_errors=True)
    ref = run_attempt(args, reference, None, None, 60.0, os.path.join(work, "logs", "reference"))
    if ref["outcome"] != "finished" or not complete(reference):
        sys.exit(f"the reference run failed ({ref['outcome']}); see {ref['log']}.err")
    reference_seconds = ref["seconds"]
    features = digits_features()
    reference_codes = encode(os.path.join(reference, "export"), features)
    print(f"reference run: {reference_seconds:.1f} s, mAP@all {map_at_all(reference):.4f}", flush=True)

    rng = random.Random(args.seed)
    order = []
    while len(order) < args.kills:  # one round per run: kills while it trains, then after training
        during = [w for w in args.windows if w in TRAINING_WINDOWS] * 2
        rng.shuffle(during)
        order += during + [w for w in WINDOWS if w in args.windows and w not in TRAINING_WINDOWS]
    shutil.rmtree(drill, ignore_errors=True)
    attempts, completed_codes_equal = [], []
    print(f"\n{'':>7}  {'':16} {'':10} {'resumed from the checkpoint of':>30}")
    print(f"{'attempt':>7}  {'window':16} {'outcome':10} {'epoch':>10} {'step':>9} {'seconds':>7}  notes")
    for number, window in enumerate(order[: args.kills], 1):
        log = os.path.join(work, "logs", f"attempt-{number:03d}-{window}")
        record = run_attempt(args, drill, window, rng, reference_seconds, log)
        if record["outcome"] == "finished" and complete(drill):
            codes = encode(os.path.join(drill, "export"), features)
            record["completed"] = True
            record["codes_equal"] = bool(np.array_equal(codes, reference_codes))
            record["map_at_all"] = map_at_all(drill)
            completed_codes_equal.append(record["codes_equal"])
            shutil.rmtree(drill)
        attempts.append(record)
        print_attempt(number, record)

    if not (attempts and attempts[-1].get("completed")):
        log = os.path.join(work, "logs", "final")
        final = run_attempt(args, drill, None, rng, reference_seconds, log)
        print_attempt("final", final)
        attempts.append({**final, "final": True})
        if final["outcome"] != "finished" or not complete(drill):
            final_codes_equal, final_map = False, None
        else:
            final_codes_equal = bool(
                np.array_equal(encode(os.path.join(drill, "export"), features), reference_codes)
            )
            final_map = map_at_all(drill)
        completed_codes_equal.append(final_codes_equal)
    else:  # the last attempt completed the run (and its folder was removed)
        final_codes_equal, final_map = attempts[-1]["codes_equal"], attempts[-1]["map_at_all"]

    kill_attempts = [a for a in attempts if not a.get("final")]
    summary = {
        "command": " ".join(train_command(args, "OUT")[1:]),
        "reference_seconds": reference_seconds,
        "attempts": len(kill_attempts),
        "kills": sum(a["outcome"] == "killed" for a in kill_attempts),
        "ended_before_the_kill": sum(a["outcome"] == "finished" for a in kill_attempts),
        "resumes": sum(a["resume"] for a in attempts),
        "lost": sum(a["lost"] for a in attempts),
        "runs_completed": len(completed_codes_equal),
        "runs_completed_with_reference_codes": sum(completed_codes_equal),
        "final_codes_identical": final_codes_equal,
        "reference_map_at_all": map_at_all(reference),
        "final_map_at_all": final_map,
        "windows": {w: sum(a["window"] == w for a in kill_attempts) for w in args.windows},
    }
    print(
        f"\n{summary['attempts']} attempts ({summary['windows']}): {summary['kills']} killed, "
        f"{summary['ended_before_the_kill']} ended before the kill"
    )
    print(f"successful resumes: {summary['resumes']}")
    print(f"runs lost: {summary['lost']}")
    print(
        f"runs completed: {summary['runs_completed']}, with the reference's codes: "
        f"{summary['runs_completed_with_reference_codes']}"
    )
    print(f"final codes identical to the uninterrupted run's: {'yes' if final_codes_equal else 'no'}")
    final_text = "-" if final_map is None else f"{final_map:.6f}"
    print(f"mAP@all: uninterrupted {summary['reference_map_at_all']:.6f}, drilled {final_text}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "attempts": [ref | {"reference": True}] + attempts}, f, indent=1)
    failed = summary["lost"] > 0 or summary["runs_completed_with_reference_codes"] < summary["runs_completed"]
    if temporary and not failed:
        shutil.rmtree(work, ignore_errors=True)
    elif failed:
        print(f"logs kept in {os.path.join(work, 'logs')}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
