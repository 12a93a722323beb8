"""Pictures of retrieval results (matplotlib, written as PNG)."""

import numpy as np

from tfhash.files import atomic_path


def save_figure(fig, path, title=None):
    """Titles, lays out and writes a matplotlib figure as PNG atomically, then closes it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _share_label(query_labels, result_labels):
    """(q, k) bool: result shares at least one label with its query (one-hot or multi-hot)."""
    return np.einsum("qc,qkc->qk", query_labels > 0, result_labels > 0) > 0


def retrieval_grid(
    path, query_images, result_images, distances, query_labels=None, result_labels=None, title=None
):
    """Writes a grid: one row per query, the query then its top-k results.

    Each result is framed green when it shares a label with its query and red
    otherwise (grey without labels), and captioned with its Hamming distance,
    like the retrieval figures of the hashing papers.

    Args:
        path: output PNG path (written atomically).
        query_images: (q, H, W) grey or (q, H, W, 3) colour, values in [0, 1].
        result_images: (q, k, H, W[, 3]).
        distances: (q, k) Hamming distances.
        query_labels, result_labels: (q, C) and (q, k, C) one-/multi-hot, or None.
        title: figure title.

    Returns:
        (q, k) bool array of label matches (None without labels).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_query, k = distances.shape
    matches = None if query_labels is None else _share_label(query_labels, result_labels)
    fig, axes = plt.subplots(n_query, k + 1, figsize=(1.1 * (k + 1), 1.25 * n_query + 0.4), squeeze=False)
    cmap = "gray" if query_images.ndim == 3 else None
    for i in range(n_query):
        _show(axes[i, 0], query_images[i], cmap, "black", "query", linewidth=2)
        for j in range(k):
            color = "grey" if matches is None else ("tab:green" if matches[i, j] else "tab:red")
            _show(axes[i, j + 1], result_images[i, j], cmap, color, f"d={int(distances[i, j])}")
    save_figure(fig, path, title)
    return matches


def _show(ax, image, cmap, color, caption, linewidth=4):
    ax.imshow(np.clip(image, 0, 1), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(linewidth)
    ax.set_title(caption, fontsize=7, pad=2)


def reconstruction_grid(path, rows, image_shape, title=None):
    """Writes a grid with one row per (name, images (n, D)) pair: originals, then reconstructions.

    Each row's name labels it on the left; pixel values are clipped to [0, 1].
    Like Fig. 2 of R-SGH (Du et al. 2018).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), n, figsize=(0.9 * n + 0.8, 1.0 * len(rows) + 0.4), squeeze=False)
    cmap = "gray" if len(image_shape) == 2 else None
    for r, (name, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(np.reshape(images[c], image_shape), 0, 1), cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    save_figure(fig, path, title)
