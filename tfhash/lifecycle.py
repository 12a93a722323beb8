"""A training run's lifecycle: its folder, checkpoints, exact resume, divergence and interruption.

`tfhash.train.fit` hands a deep run to this module between "the folder is
ready" and "metrics.json is written". What it guarantees:

- The output folder is created and proved writable before any data or model
  is touched, and the temporaries a killed run left behind in it (a
  half-written export, checkpoint or file) are removed.
- After every epoch (`steps_per_epoch` training steps) a complete checkpoint
  is written to a temporary folder and renamed to
  `checkpoints/epoch-NNNNNN/`: `model.weights.h5` (every weight, the
  optimisers' slots and step counts, `train_steps`, GECO's state) and
  `state.json` (epochs and steps done, training seconds so far, the states of
  every `keras.random.SeedGenerator` in the model, and a fingerprint of the
  configuration, data split and seed). The two newest are kept, so a kill
  while one is written leaves the previous one whole.
- A re-run of the same command resumes from the newest checkpoint that
  reads back: the weights and seed-generator states are restored, and the
  data stream is rebuilt at the next batch (`tfhash.data.batch_dataset`'s
  `start_batch`: item order and augmentation are keyed by epoch and batch
  number, never by an iterator's position). The resumed run's codes equal the
  uninterrupted run's bit for bit. A checkpoint that does not read back gets
  one warning line and the previous one is used (or training starts over,
  saying so). A checkpoint of another configuration is refused.
- Checkpoints stay until the export and metrics.json are written: a run
  killed during evaluation or export evaluates and exports again without
  training. `train_seconds` adds up over every resumed part.
- A loss term that becomes NaN or infinite stops training at once with
  `TrainingDiverged` (step and term named, the last good checkpoint kept);
  Ctrl-C raises `RunInterrupted` with one line saying where it stopped.

`fault_point(name)` marks the moments a kill matters (tests and
`benchmarks/fault_drill.py` stop a run there).
"""

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import sys
import time

import keras
import numpy as np

from tfhash.files import atomic_folder, remove_stale_temporaries, writable_folder

CHECKPOINTS = "checkpoints"
KEEP = 2
_PAUSE_ENV = "TFHASH_FAULT_PAUSE"


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the run stopped and how to resume."""


_hook = None


def fault_point(name, **info):
    """Marks a moment where a kill must not lose work: calls the installed hook (tests), and with
    TFHASH_FAULT_PAUSE=name:seconds prints `fault-point NAME` to stderr and sleeps there (the fault
    drill kills the process in that window)."""
    if _hook is not None:
        _hook(name, info)
    pause = os.environ.get(_PAUSE_ENV, "")
    point, _, seconds = pause.partition(":")
    if point == name:
        print(f"fault-point {name}", file=sys.stderr, flush=True)
        time.sleep(float(seconds or 1.0))


@contextlib.contextmanager
def fault_hook(function):
    """Installs `function(name, info)` as the fault hook for the duration (tests)."""
    global _hook
    previous, _hook = _hook, function
    try:
        yield
    finally:
        _hook = previous


def prepare_folder(out):
    """Creates `out`, checks that it can be written, removes temporaries a killed run left."""
    writable_folder(out, "the output folder")
    remove_stale_temporaries(out)
    remove_stale_temporaries(os.path.join(out, CHECKPOINTS))


def fingerprint(*parts):
    """A short hash of JSON-able parts: what a checkpoint must match to be resumed."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_generators(model):
    """Every `keras.random.SeedGenerator` of `model` and its layers, in a fixed order."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True):
        for generator in getattr(layer, "_seed_generators", []):
            if id(generator) not in seen:
                seen.add(id(generator))
                found.append(generator)
    return found


class Checkpoints:
    """The checkpoints of one run folder (see the module docstring)."""

    def __init__(self, out, run_fingerprint):
        self.folder = os.path.join(os.path.abspath(out), CHECKPOINTS)
        self.fingerprint = run_fingerprint

    def paths(self):
        """Checkpoint folders, newest first."""
        return sorted(glob.glob(os.path.join(self.folder, "epoch-[0-9]*")), reverse=True)

    def save(self, model, state):
        """Writes a complete checkpoint of `model` with `state` (a dict with "epoch"), keeps the
        newest `KEEP`."""
        state = {
            **state,
            "fingerprint": self.fingerprint,
            "seed_generators": [np.asarray(g.state.numpy()).tolist() for g in seed_generators(model)],
        }
        path = os.path.join(self.folder, f"epoch-{state['epoch']:06d}")
        with atomic_folder(path) as tmp:
            weights = os.path.join(tmp, "model.weights.h5")
            model.save_weights(weights)
            with open(os.path.join(tmp, "state.json"), "w") as f:
                json.dump(state, f, indent=1)
            for name in ("model.weights.h5", "state.json"):
                _fsync(os.path.join(tmp, name))
            fault_point("checkpoint-write", epoch=state["epoch"])
        for old in self.paths()[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)

    def restore(self, model):
        """Loads the newest checkpoint that reads back into `model`; returns its state, or None.

        A checkpoint that does not read back is reported in one line and
        removed; one of another configuration raises a ValueError.
        """
        paths = self.paths()
        for path in paths:
            try:
                state = _read_state(path)
            except (OSError, ValueError) as err:
                print(f"warning: skipping the unreadable checkpoint {path} ({err})")
                shutil.rmtree(path, ignore_errors=True)
                continue
            if state.get("fingerprint") != self.fingerprint:
                raise ValueError(
                    f"{self.folder} holds checkpoints of another run (another method, configuration, "
                    "data split or seed); re-run with the settings they were made with, choose another "
                    f"--out, or delete {self.folder} to start over"
                )
            generators = seed_generators(model)
            if len(generators) != len(state["seed_generators"]):
                raise ValueError(f"{path} does not match this model's random state; delete {self.folder}")
            model.load_weights(os.path.join(path, "model.weights.h5"))
            for generator, value in zip(generators, state["seed_generators"], strict=True):
                generator.state.assign(np.asarray(value, generator.state.dtype))
            return state
        if paths:
            print(f"warning: no checkpoint in {self.folder} reads back; training starts over")
        return None

    def remove(self):
        """Removes the checkpoints (and temporaries) tfhash wrote, then the folder if that
        emptied it: anything else a user put there stays."""
        if not os.path.isdir(self.folder):
            return
        remove_stale_temporaries(self.folder)
        for path in self.paths():
            if re.fullmatch(r"epoch-\d{6}", os.path.basename(path)) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)


def _read_state(path):
    """state.json of a checkpoint folder, after checking that its weights file reads back whole."""
    import h5py

    with open(os.path.join(path, "state.json")) as f:
        state = json.load(f)
    if not isinstance(state, dict) or "epoch" not in state:
        raise ValueError("state.json has no epoch")
    weights = os.path.join(path, "model.weights.h5")
    try:
        with h5py.File(weights, "r") as f:
            f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except Exception as err:  # h5py raises several types for a truncated or garbled file
        raise ValueError(f"model.weights.h5 does not read back: {err}") from None
    return state


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunCallback(keras.callbacks.Callback):
    """Checkpoints after every epoch, stops on a non-finite loss term, counts training time.

    Args:
        checkpoints: the run's `Checkpoints`.
        epochs: the run's number of epochs.
        seconds_before: training seconds of earlier (resumed) parts.
        budget_seconds: stop after the first batch that ends past this many
            training seconds in all (None: no budget).
        resumes: how many times the run has been resumed (recorded in each
            checkpoint).
        saved_step: the step of the checkpoint the run resumed from (None:
            a fresh run); then of each checkpoint written.
    """

    def __init__(
        self, checkpoints, epochs, seconds_before=0.0, budget_seconds=None, resumes=0, saved_step=None
    ):
        super().__init__()
        self.checkpoints, self.epochs = checkpoints, epochs
        self.seconds_before, self.budget_seconds, self.resumes = seconds_before, budget_seconds, resumes
        self.start = None
        self.saved_step = saved_step

    def train_seconds(self):
        return self.seconds_before + (time.time() - self.start if self.start else 0.0)

    def step(self):
        return int(self.model.train_steps.numpy())

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        bad = sorted(k for k, v in (logs or {}).items() if not np.all(np.isfinite(np.asarray(v, float))))
        if bad:
            step = self.step()
            kept = (
                f"the last good checkpoint (step {self.saved_step:,}) is kept in {self.checkpoints.folder}"
                if self.saved_step is not None
                else "no checkpoint was written yet"
            )
            raise TrainingDiverged(
                f"training diverged at step {step:,}: the loss term {', '.join(bad)} became NaN or "
                f"infinite; {kept}. Lower --learning-rate (or check the data for extreme values) and "
                "train again in a new --out"
            )
        if self.budget_seconds is not None and self.train_seconds() >= self.budget_seconds:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        finished = epoch + 1 >= self.epochs or bool(self.model.stop_training)
        self.save(epoch + 1, finished)

    def save(self, epoch, finished):
        step = self.step()
        state = {
            "epoch": epoch,
            "steps": step,
            "finished": finished,
            "train_seconds": self.train_seconds(),
            "resumes": self.resumes,
        }
        self.checkpoints.save(self.model, state)
        self.saved_step = step
        fault_point("checkpoint-saved", epoch=epoch)


def interrupted_message(out, step, total_steps, saved_step):
    where = f"step {step:,} of {total_steps:,}"
    if saved_step is None:
        return f"interrupted at {where}, before the first checkpoint; re-run the same command to start again"
    return (
        f"interrupted at {where}; the last checkpoint (step {saved_step:,}) is in "
        f"{os.path.join(out, CHECKPOINTS)}: re-run the same command to resume from it"
    )
