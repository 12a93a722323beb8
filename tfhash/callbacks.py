"""Keras callbacks for hashing models."""

import keras

from tfhash.evaluation import label_relevance, retrieval_metrics


class RetrievalEvaluation(keras.callbacks.Callback):
    """Encodes validation queries against a database every N epochs.

    Sets `logs["val_map_at_all"]`, `logs["val_map_at_<k>"]` and
    `logs["val_precision_radius_<r>"]`, so it must come before
    `keras.callbacks.TensorBoard` in the callback list. The model needs an
    `encode_split(split) -> {0, 1} codes` method (every `HashingModel` has one).

    Args:
        query, database: `tfhash.data.Split`s with labels (carved from the
            training data: never the test queries).
        every: evaluate after every `every` epochs (and after the last one).
        top_k, radius, ties: as in `tfhash.evaluation.retrieval_metrics`.
    """

    def __init__(self, query, database, every=1, top_k=(None, 1000), radius=2, ties="expected"):
        super().__init__()
        self.query, self.database = query, database
        self.relevance = label_relevance(query.labels, database.labels)
        self.every, self.top_k, self.radius, self.ties = max(1, int(every)), top_k, radius, ties
        self.history = []

    def on_train_begin(self, logs=None):
        self.total_epochs = self.params.get("epochs", 0)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.total_epochs:
            return
        metrics = retrieval_metrics(
            self.model.encode_split(self.query),
            self.model.encode_split(self.database),
            self.relevance,
            top_k=self.top_k,
            radius=self.radius,
            ties=self.ties,
        )
        self.history.append((epoch + 1, metrics))
        if logs is not None:
            logs.update({f"val_{key}": value for key, value in metrics.items()})
