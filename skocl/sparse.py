"""Sparse, wide input kept sparse: the pieces skocl's default network uses for it, for
networks of your own.

Passing a scipy sparse matrix to :class:`~skocl.OnlineFineTuneClassifier` with the
default network (``module=None``) builds a :class:`SparseLinear` first layer and keeps
every batch as :class:`SparseRows` from the chunk to that layer. A module of your own
receives :class:`SparseRows` batches instead of densified ones when it opts in with a
true ``accepts_sparse`` attribute; its first layer is then typically a
:class:`SparseLinear` (which the estimator then updates with :class:`LazyAdam` and
checkpoints row by row, as it does the default network's).

Examples
--------
>>> import numpy as np, scipy.sparse as sp, torch
>>> from torch import nn
>>> from skocl import OnlineFineTuneClassifier
>>> from skocl.sparse import SparseLinear
>>> class BagOfWords(nn.Module):
...     accepts_sparse = True  # give me SparseRows, not dense rows
...
...     def __init__(self, n_features=2**16, width=32, n_classes=2):
...         super().__init__()
...         self.trunk = nn.Sequential(SparseLinear(n_features, width), nn.ReLU())
...         self.head = nn.Linear(width, n_classes)
...
...     def forward(self, x):
...         return self.head(self.trunk(x))
>>> X = sp.random(200, 2**16, density=1e-3, format="csr", random_state=0)
>>> y = np.arange(200) % 2
>>> clf = OnlineFineTuneClassifier(BagOfWords, random_state=0).partial_fit(X, y)
>>> type(clf.learner_.trunk_optimizer).__name__
'LazyAdam'
"""

from ._sparse import SparseLinear, SparseRows, csr_rows
from ._sparse_optim import LazyAdam

__all__ = ["LazyAdam", "SparseLinear", "SparseRows", "csr_rows"]
