"""
Text stream: raw documents, hashed, learned chunk by chunk
==========================================================

A stream of raw text documents, 1,000 at a time, turned into sparse rows by
:class:`~sklearn.feature_extraction.text.HashingVectorizer` (``2**20`` columns) inside a
:class:`~skocl.StreamPipeline`, and learned test-then-train by
:class:`~skocl.OnlineFineTuneClassifier` and by scikit-learn's out-of-core text
learner, :class:`~sklearn.linear_model.SGDClassifier` with the logistic loss.

The corpus ships offline: :func:`skocl.datasets.load_docstrings` reads the docstrings of
skocl's installed dependencies (numpy, scipy, scikit-learn, torch, skorch) and labels
each by its package. The first call parses the sources (about a minute, for torch) and
caches the result.
"""

# %%
# The corpus, shuffled once (deterministically), as a stream of chunks of raw text.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier

from skocl import OnlineFineTuneClassifier, make_stream_pipeline
from skocl.datasets import load_docstrings
from skocl.stream import prequential

texts, labels = load_docstrings(random_state=0)
classes = np.unique(labels)
names, counts = np.unique(labels, return_counts=True)
print(f"{len(texts)} documents:", ", ".join(f"{c} {n}" for c, n in zip(names, counts)))


def chunks(size=1000):
    for lo in range(0, len(texts), size):
        yield texts[lo : lo + size], labels[lo : lo + size]


# %%
# Two pipelines with the same stateless vectorizer. ``alternate_sign=False`` keeps the
# features non-negative (L2-normed term counts). The vectorizer has no vocabulary to
# fit, so the pipeline applies it to each chunk and passes the sparse matrix on.
def hashing():
    return HashingVectorizer(n_features=2**20, alternate_sign=False)


pipelines = {
    "skocl": make_stream_pipeline(hashing(), OnlineFineTuneClassifier(random_state=0)),
    "SGDClassifier": make_stream_pipeline(
        hashing(), SGDClassifier(loss="log_loss", random_state=0)
    ),
}

# %%
# Test-then-train: every chunk is scored before it is learned.
results = {
    name: prequential(pipe, chunks(), classes=classes, verbose=0)
    for name, pipe in pipelines.items()
}
for name, result in results.items():
    seconds = sum(r["seconds"] for r in result.records)
    print(f"{name:14s} prequential accuracy {result.running('accuracy'):.3f}, {seconds:.1f} s")

# %%
# Accuracy on each chunk before it was learned, as the stream goes on.
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, result in results.items():
    rows = [r["rows_seen"] for r in result.records[1:]]
    ax.plot(rows, [r["accuracy"] for r in result.records[1:]], marker="o", label=name)
ax.set_xlabel("documents seen")
ax.set_ylabel("accuracy on the next chunk")
ax.set_title("Docstrings by package, hashed to 2**20 features")
ax.legend()
fig.tight_layout()
plt.show()
