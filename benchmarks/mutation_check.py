# ruff: noqa: E501 (the table holds code snippets as they are in the files)
"""The mutation check (issue 35): small deliberate defects, each of which the fast tests must catch.

    python benchmarks/mutation_check.py [--only NAME ...] [--list]

Each entry of `MUTATIONS` is (name, file under tfhash/, text, replacement, test files). For each, the
package is copied to a temporary folder, the one text is replaced there, and the named test files
run with `-m "not large" -x` against the copy (PYTHONPATH first; the script checks that the tests
import the copy). A defect is `caught` when the tests fail, `survived` when they pass, and
`site not found` when its text is no longer in the file (update the entry as the code changes).
The unmutated copy runs first and must pass (else a "caught" could be any failure). The last
line: `mutations: N, caught: C, survived: S, sites not found: F`. Keep S = 0 and F = 0.
It is a check to run before a release, not part of the default suite: each defect runs its tests
in a fresh process (a few seconds to a minute each on 2 cores).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONTRACTS = "tests/test_model_contracts.py"
HOSTILE = "tests/test_hostile_inputs.py"

MUTATIONS = [
    # issue 35's table: each slipped through the fast tests before test_model_contracts.py
    ("tbh actor adds the adversarial terms", "models/tbh.py",
     '"actor": terms["reconstruction_loss"] - adversarial / replicas',
     '"actor": terms["reconstruction_loss"] + adversarial / replicas', [CONTRACTS]),
    ("bihalf layer ignores gamma", "layers/sign_binarization.py",
     "b = bihalf(h, self.gamma) if training", "b = bihalf(h) if training", [CONTRACTS]),
    ("tbh graph exponent fixed at 1", "models/tbh.py",
     'hamming_adjacency(out["codes"], self.adjacency_power)', 'hamming_adjacency(out["codes"], 1.0)',
     [CONTRACTS]),
    ("augmentation numbering restarts after a resume", "data/pipeline.py",
     "dataset.enumerate(int(start_batch))", "dataset.enumerate(0)", [CONTRACTS]),
    ("step counter never advances", "models/base.py",
     "self.train_steps.assign_add(1)", "self.train_steps.assign_add(0)", [CONTRACTS]),
    ("hashnet ignores its alpha", "models/hashnet.py",
     'codes, inputs["labels"], self.effective_alpha, self.weighting',
     'codes, inputs["labels"], 10.0 / self.bits, self.weighting', [CONTRACTS]),
    ("hashnet ignores its weighting", "models/hashnet.py",
     'codes, inputs["labels"], self.effective_alpha, self.weighting',
     'codes, inputs["labels"], self.effective_alpha, "paper"', [CONTRACTS]),
    ("greedyhash ignores its alpha", "models/similarity_hash.py",
     "loss = similarity + self.alpha * penalty", "loss = similarity + 0.1 * penalty", [CONTRACTS]),
    ("bihalf pairs every item with every other", "models/similarity_hash.py",
     'similarity_preserving_loss(codes, flat, "halves")', 'similarity_preserving_loss(codes, flat, "all")',
     [CONTRACTS]),
    ("sgh encoder loses the KL term", "models/sgh.py",
     "encoder = recon + kl + decay[\"encoder\"]", "encoder = recon + decay[\"encoder\"]", [CONTRACTS]),
    ("rsgh encoder minimises the redundancy", "models/sgh.py",
     "encoder += self.eta * code_hidden - self.delta * redundancy",
     "encoder += self.eta * code_hidden + self.delta * redundancy", [CONTRACTS]),
    ("jmlh ignores its kl weight", "models/jmlh.py",
     "jmlh_loss_terms(inputs[\"labels\"], self.classifier(codes), logits, self.kl_weight)",
     "jmlh_loss_terms(inputs[\"labels\"], self.classifier(codes), logits, 0.2)", [CONTRACTS]),
    ("role optimisers built only at their first step", "models/base.py",
     "optimizer.build(self.role_variables(role))", "pass", [CONTRACTS]),
    ("the halving schedule never reaches the optimisers", "optimizers.py",
     '    "learning_rate_halving_steps",\n', "", [CONTRACTS]),
    ("every role descends the first role's objective", "models/base.py",
     "grads = tape.gradient(scaled[role], variables)", "grads = tape.gradient(scaled[self.roles[0]], variables)",
     [CONTRACTS]),
    ("tbh-vae actor adds the adversarial term", "models/tbh_vae.py",
     '"actor": sums + (means - adversarial) / replicas', '"actor": sums + (means + adversarial) / replicas',
     ["tests/test_tbh_vae.py", CONTRACTS]),
    ("gman generator asks its codes to look fake", "models/gman.py",
     'terms["code_adversarial_loss"] = binary_cross_entropy_from_logits(1.0, fake)',
     'terms["code_adversarial_loss"] = binary_cross_entropy_from_logits(0.0, fake)',
     ["tests/test_gman.py", CONTRACTS]),
    ("application backbones see pixels in [0, 1]", "backbones/applications.py",
     "preprocess(self.network, x * 255.0)", "preprocess(self.network, x)", ["tests/test_backbones.py"]),
    ("multihash top-k stops at the first result", "index.py",
     "done = np.flatnonzero(counts >= k)", "done = np.flatnonzero(counts >= 1)", ["tests/test_index.py"]),
    # the maths the older tests already held
    ("reconstruction loss loses its half", "losses.py",
     "return 0.5 * tf.reduce_sum(tf.square(x - x_hat))", "return tf.reduce_sum(tf.square(x - x_hat))",
     ["tests/test_losses.py", CONTRACTS]),
    ("adversarial loss swaps real and fake", "losses.py",
     "binary_cross_entropy_from_logits(1.0, real_logits) + binary_cross_entropy_from_logits(\n        0.0, fake_logits",
     "binary_cross_entropy_from_logits(0.0, real_logits) + binary_cross_entropy_from_logits(\n        1.0, fake_logits",
     ["tests/test_losses.py", CONTRACTS]),
    ("hamming adjacency subtracts the dot product", "layers/graph_convolution.py",
     "similarity = (bits + tf.matmul(signs, signs, transpose_b=True))",
     "similarity = (bits - tf.matmul(signs, signs, transpose_b=True))", ["tests/test_layers.py", CONTRACTS]),
    ("graph normalisation with sqrt, not rsqrt", "layers/graph_convolution.py",
     "inv_sqrt_degree = tf.math.rsqrt(", "inv_sqrt_degree = tf.math.sqrt(", ["tests/test_layers.py", CONTRACTS]),
    ("exported codes packed least significant bit first", "export.py",
     "weights = tf.constant([128, 64, 32, 16, 8, 4, 2, 1], tf.int32)",
     "weights = tf.constant([1, 2, 4, 8, 16, 32, 64, 128], tf.int32)", ["tests/test_serve.py"]),
    ("hashnet continuation power 1", "models/hashnet.py",
     "def continuation_beta(step, gamma=0.005, interval=200, power=0.5):",
     "def continuation_beta(step, gamma=0.005, interval=200, power=1.0):", ["tests/test_hashnet.py", CONTRACTS]),
    # hostile inputs (issue 34)
    ("cifar reader admits object arrays", "data/cifar_batches.py",
     '_DTYPES = {"u1",', '_DTYPES = {"O8", "u1",', [HOSTILE]),
    ("temporary folders need no marker", "files.py",
     "return os.path.isfile(os.path.join(path, TEMPORARY_MARKER))", "return True", [HOSTILE]),
    ("npz size check off by 100x", "files.py", "if total > limit:", "if total > 100 * limit:", [HOSTILE]),
    ("pickle depth unbounded", "pickle_bounds.py", "MAX_DEPTH = 100", "MAX_DEPTH = 10**7", [HOSTILE]),
    ("bench counts a repeated seed", "bench.py", "if repeated:", "if False:", [HOSTILE]),
    ("negative class ids accepted", "checks.py", "negative = ids < 0", "negative = ids < -1",
     [HOSTILE, "tests/test_bad_inputs.py"]),
    ("codes files' padding bits unchecked", "encoder.py",
     "if pad and len(packed) and np.any(", "if False and np.any(", [HOSTILE]),
    ("a user's partial folder is removed", "features.py",
     'if not isinstance(job, dict) or not str(job.get("format", "")).startswith("tfhash-features-partial"):',
     "if False:", [HOSTILE]),
    ("output symlinks written through", "files.py",
     'if os.path.islink(path):\n        raise ValueError(f"{path} is a symbolic link',
     'if False:\n        raise ValueError(f"{path} is a symbolic link', [HOSTILE]),
    ("serving chunks keep their padding", "export.py",
     "return tf.reshape(out, (-1, width))[:n]", "return tf.reshape(out, (-1, width))", [HOSTILE]),
    ("a failed run's folder kept", "train.py",
     "            remove_failed_run(out)\n", "            pass\n", [HOSTILE]),
    ("another method's run folder accepted", "train.py",
     "if previous is not None and previous != method:", "if False:", [HOSTILE]),
]  # fmt: skip


def run(entry, python=sys.executable):
    name, path, text, replacement, tests = entry
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        package = os.path.join(scratch, "tfhash")
        shutil.copytree(os.path.join(ROOT, "tfhash"), package, ignore=shutil.ignore_patterns("__pycache__"))
        target = os.path.join(package, path)
        with open(target) as f:
            source = f.read()
        if text is not None and source.count(text) != 1:
            return "site not found", 0.0
        with open(target, "w") as f:
            f.write(source if text is None else source.replace(text, replacement))
        env = {**os.environ, "PYTHONPATH": scratch + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
        probe = subprocess.run([python, "-c", "import tfhash; print(tfhash.__file__)"], env=env, cwd=scratch,
                               capture_output=True, text=True)  # fmt: skip
        if not probe.stdout.strip().startswith(scratch):
            raise SystemExit(
                f"the tests would import {probe.stdout.strip()}, not the mutated copy in {scratch}"
            )
        start = time.time()
        result = subprocess.run(  # from the scratch folder: `python -m` puts the cwd first on sys.path
            [python, "-m", "pytest", "-q", "-x", "-m", "not large", "-p", "no:cacheprovider",
             "-c", os.path.join(ROOT, "setup.cfg"), "--rootdir", ROOT, *(os.path.join(ROOT, t) for t in tests)],
            env=env, cwd=scratch, capture_output=True, text=True,
        )  # fmt: skip
        return ("caught" if result.returncode != 0 else "survived"), time.time() - start


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", help="run the entries whose name contains one of these words")
    parser.add_argument("--list", action="store_true", help="list the entries and stop")
    args = parser.parse_args()
    entries = [e for e in MUTATIONS if not args.only or any(w in e[0] for w in args.only)]
    if args.list:
        for entry in entries:
            print(f"{entry[0]} ({entry[1]}; {', '.join(entry[4])})")
        return 0
    counts = {"caught": 0, "survived": 0, "site not found": 0}
    start = time.time()
    tests = sorted({t for e in entries for t in e[4]})
    verdict, seconds = run(("baseline", "__init__.py", None, None, tests))
    if verdict != "survived":  # the unmutated copy must pass, or every "caught" below means nothing
        print(f"the unmutated package fails {', '.join(tests)}: fix that first")
        return 1
    print(f"{'passes':>14}  the unmutated package ({len(tests)} test files, {seconds:.0f} s)", flush=True)
    for entry in entries:
        verdict, seconds = run(entry)
        counts[verdict] += 1
        print(f"{verdict:>14}  {entry[0]}  ({entry[1]}, {seconds:.0f} s)", flush=True)
    print(
        f"mutations: {len(entries)}, caught: {counts['caught']}, survived: {counts['survived']}, "
        f"sites not found: {counts['site not found']} ({time.time() - start:.0f} s)"
    )
    return 0 if counts["survived"] == counts["site not found"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
