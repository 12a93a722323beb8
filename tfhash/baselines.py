"""Classic unsupervised hashing baselines: LSH, PCAH, ITQ and SH, in NumPy.

Every baseline has the surface of the deep models where a user meets it:
`fit(train_features)`, `encode(features) -> {0, 1} uint8 codes (n, bits)`,
`save(path)` / `tfhash.baselines.load(path)`, `get_config()` /
`from_config()`, and the same evaluation (`tfhash.train.evaluate`). Fitting
and encoding run in float64; a bit is 1 where its real-valued projection is
strictly positive.

Determinism: LSH and ITQ draw their random matrices from
`numpy.random.default_rng(seed)`; PCAH and SH are deterministic (the sign of
each principal direction is fixed so that its largest-magnitude entry is
positive), the seed is kept only for a uniform interface.
"""

import warnings

import numpy as np

from tfhash.checks import check_features, check_positive_int
from tfhash.defaults import BITS
from tfhash.files import read_npz, write_npz

FORMAT = "tfhash-baseline-1"


def principal_directions(features, dims):
    """Mean (D,), top `dims` principal directions (D, dims) and their variances (dims,).

    Directions are unit columns ordered by decreasing variance, each signed
    so that its largest-magnitude entry is positive (a reproducible choice).
    """
    mean = features.mean(axis=0)
    centred = features - mean
    covariance = centred.T @ centred / max(len(features) - 1, 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    directions = eigenvectors[:, ::-1][:, :dims]
    signs = np.sign(directions[np.abs(directions).argmax(axis=0), np.arange(dims)])
    variances = np.maximum(eigenvalues[::-1][:dims], 0.0)
    return mean, directions * np.where(signs == 0, 1.0, signs), variances


def random_rotation(size, rng):
    """A Haar-random orthogonal (size, size) matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(size, size)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def itq_rotation(projected, iterations=50, rotation=None, rng=None):
    """Iterative quantisation (Gong & Lazebnik 2011, Sec. 2.2).

    Minimises Q(B, R) = ||B - V R||_F^2 over B in {-1, +1}^(n, c) and
    orthogonal R by alternation. For fixed R the minimiser is B = sign(V R).
    For fixed B, Q = const - 2 tr(R^T V^T B), maximised over orthogonal R by
    the Procrustes solution: with V^T B = U S W^T (SVD), R = U W^T. Each
    half-step is an exact minimiser, so Q never increases.

    Args:
        projected: V, (n, c) zero-centred PCA projections.
        iterations: number of (B, R) alternations (50 in the paper).
        rotation: initial R (default: random orthogonal from `rng`).

    Returns:
        (R (c, c), losses) with losses[t] = Q after the B step of iteration
        t, and a final entry after the last R step.
    """
    if rotation is None:
        rotation = random_rotation(projected.shape[1], rng or np.random.default_rng(0))
    losses = []
    for _ in range(iterations):
        rotated = projected @ rotation
        signs = np.where(rotated > 0, 1.0, -1.0)
        losses.append(float(np.sum((signs - rotated) ** 2)))
        u, _, wt = np.linalg.svd(projected.T @ signs)
        rotation = u @ wt
    rotated = projected @ rotation
    losses.append(float(np.sum((np.where(rotated > 0, 1.0, -1.0) - rotated) ** 2)))
    return rotation, losses


def spectral_modes(ranges, bits):
    """The `bits` smallest single-dimension eigenfunctions of a uniform box (SH).

    Along a dimension with range width r, the 1-D Laplacian eigenfunctions
    of a uniform density are cos(k pi t / r), k = 0, 1, ..., with eigenvalue
    increasing in the frequency omega = k pi / r (Weiss et al. 2008, Eq. 6).
    k = 0 is constant and skipped. The `bits` smallest omegas over all
    dimensions are never above (bits + 1) pi / max(r), so dimension i needs
    k <= ceil((bits + 1) r_i / max(r)). Ties go to the lower dimension, then
    the lower k.

    Returns:
        (dims (bits,) int, omegas (bits,) float): the dimension and the
        frequency of each bit.
    """
    max_modes = np.ceil((bits + 1) * ranges / ranges.max()).astype(int)
    dims = np.concatenate([np.full(m, i) for i, m in enumerate(max_modes)])
    ks = np.concatenate([np.arange(1, m + 1) for m in max_modes])
    omegas = ks * np.pi / ranges[dims]
    order = np.lexsort((ks, dims, omegas))[:bits]
    return dims[order], omegas[order]


class Baseline:
    """A shallow hashing method: fit on training features, encode to bits.

    Subclasses set `name`, implement `_fit(x)` (float64 (n, D), sets
    `self.state`) and `_project(x) -> (n, bits)` real values whose sign
    gives the code.

    Args:
        bits: code length.
        seed: seed of the method's random draws.
    """

    name = None

    def __init__(self, bits=BITS, seed=0):
        self.bits = check_positive_int("bits", bits)
        self.seed = seed
        self.input_dim = None
        self.state = {}

    def fit(self, features):
        """Fits on training features (n, D); returns self."""
        features = check_features(features, None, self.name)
        if len(features) < 2:
            raise ValueError(f"{self.name} needs at least 2 training items; received {len(features)}")
        self.input_dim = features.shape[1]
        self.state = {}
        self._fit(features.astype(np.float64))
        return self

    def encode(self, features, batch_size=65536):
        """Encodes features (n, D) to {0, 1} uint8 codes (n, bits)."""
        if self.input_dim is None:
            raise ValueError(f"{self.name} is not fitted; call fit(train_features) or load a saved one")
        features = check_features(features, self.input_dim, self.name)
        codes = np.zeros((len(features), self.bits), np.uint8)
        for start in range(0, len(features), batch_size):
            chunk = features[start : start + batch_size].astype(np.float64)
            codes[start : start + batch_size] = self._project(chunk) > 0
        return codes

    def get_config(self):
        return {"bits": self.bits, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def save(self, path):
        """Writes method, config and fitted state to one .npz file, atomically."""
        if self.input_dim is None:
            raise ValueError(f"{self.name} is not fitted; nothing to save")
        meta = {
            "format": FORMAT,
            "method": self.name,
            "config": self.get_config(),
            "input_dim": self.input_dim,
        }
        return write_npz(path, meta, **self.state)


class LinearBaseline(Baseline):
    """Codes are sign((x - mean) @ projection); `_fit` sets mean and projection."""

    def _project(self, x):
        return (x - self.state["mean"]) @ self.state["projection"]

    def _check_bits_fit(self, x):
        limit = min(x.shape)
        if self.bits > limit:
            raise ValueError(
                f"{self.name} takes at most min(n_train, feature_dim) = {limit} bits from PCA; "
                f"received bits={self.bits}. Use fewer bits, or LSH/SH for longer codes."
            )

    def _warn_degenerate(self, variances):
        flat = int(np.sum(variances <= 1e-10 * max(float(variances[0]), 1e-300)))
        if flat:
            warnings.warn(
                f"{self.name}: {flat} of the {self.bits} principal directions have zero variance in the "
                "training data (its rank is too low for this many bits); their bits are the sign of "
                "round-off",
                stacklevel=3,
            )


class LSH(LinearBaseline):
    """Locality-sensitive hashing by random projections (Charikar 2002).

    Codes are sign(x @ W), W ~ N(0, 1) of shape (D, bits) drawn from
    `default_rng(seed)`: the textbook SimHash, and the LSH of protocols.md's
    reference figures. `centre=True` removes the training mean first
    (sign((x - mean) @ W)), which scores higher on mnist and digits.

    Args:
        bits: code length.
        seed: seed of W.
        centre: subtract the training mean before projecting (default False).
    """

    name = "lsh"

    def __init__(self, bits=BITS, seed=0, centre=False):
        super().__init__(bits, seed)
        self.centre = bool(centre)

    def _fit(self, x):
        rng = np.random.default_rng(self.seed)
        mean = x.mean(axis=0) if self.centre else np.zeros(x.shape[1])
        self.state = {"mean": mean, "projection": rng.normal(size=(x.shape[1], self.bits))}

    def get_config(self):
        return {**super().get_config(), "centre": self.centre}


class PCAH(LinearBaseline):
    """PCA hashing: the sign of the top-`bits` principal components."""

    name = "pcah"

    def _fit(self, x):
        self._check_bits_fit(x)
        mean, directions, variances = principal_directions(x, self.bits)
        self._warn_degenerate(variances)
        self.state = {"mean": mean, "projection": directions}


class ITQ(LinearBaseline):
    """Iterative quantisation (Gong & Lazebnik, CVPR 2011 / TPAMI 2013).

    PCA to `bits` dimensions, then the orthogonal rotation R that minimises
    the quantisation loss ||sign(V R) - V R||^2, found by `iterations`
    alternations from a random orthogonal start (`itq_rotation`). After
    `fit`, `losses` holds the loss per iteration (it never increases).

    Args:
        bits: code length (at most the feature width).
        seed: seed of the initial rotation.
        iterations: alternations (50 in the paper).
    """

    name = "itq"

    def __init__(self, bits=BITS, seed=0, iterations=50):
        super().__init__(bits, seed)
        self.iterations = check_positive_int("iterations", iterations)
        self.losses = []

    def _fit(self, x):
        self._check_bits_fit(x)
        mean, directions, variances = principal_directions(x, self.bits)
        self._warn_degenerate(variances)
        rng = np.random.default_rng(self.seed)
        rotation, self.losses = itq_rotation((x - mean) @ directions, self.iterations, rng=rng)
        self.state = {"mean": mean, "projection": directions @ rotation}

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations}


class SH(Baseline):
    """Spectral hashing (Weiss, Torralba & Fergus, NIPS 2008).

    PCA to min(bits, D) directions; the data are assumed uniform on the box
    spanned by the training projections' [min, max] along each direction;
    the code bits are the `bits` analytical single-dimension eigenfunctions
    with the smallest eigenvalues (`spectral_modes`), thresholded at zero:
    bit j = [cos(omega_j (v_dim_j - min_dim_j)) > 0].
    """

    name = "sh"

    def _fit(self, x):
        dims = min(self.bits, x.shape[1], len(x) - 1)
        mean, directions, _ = principal_directions(x, dims)
        projected = (x - mean) @ directions
        low, high = projected.min(axis=0), projected.max(axis=0)
        ranges = np.maximum(high - low, 1e-12)
        mode_dims, omegas = spectral_modes(ranges, self.bits)
        self.state = {
            "mean": mean,
            "directions": directions,
            "low": low,
            "mode_dims": mode_dims,
            "omegas": omegas,
        }

    def _project(self, x):
        s = self.state
        projected = (x - s["mean"]) @ s["directions"]
        return np.cos(s["omegas"] * (projected[:, s["mode_dims"]] - s["low"][s["mode_dims"]]))


BASELINES = {cls.name: cls for cls in (LSH, PCAH, ITQ, SH)}


def load(path):
    """Loads a baseline written by `Baseline.save`."""
    meta, arrays = read_npz(path, FORMAT, "write one with `tfhash train itq` or Baseline.save")
    if meta.get("method") not in BASELINES:
        raise ValueError(f"{path}: unknown baseline {meta.get('method')!r}; known: {', '.join(BASELINES)}")
    model = BASELINES[meta["method"]].from_config(meta["config"])
    model.input_dim = int(meta["input_dim"])
    model.state = arrays
    return model
