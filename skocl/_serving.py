"""The prediction face of OnlineFineTuneClassifier: input checks on the hot path and
``predict``, ``predict_proba``, ``predict_log_proba``, ``decision_function`` over the
served weights, and ``to_skorch``."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data

from ._modules import OPTIMIZERS, TrunkHeadNet
from ._rows import FORWARD_ROWS
from ._steps import argmax_rows, check_logits, forward
from ._validation import FLOATS, cast


class ServingMixin:
    """Predictions of an estimator whose ``learner_`` serves a trunk and a head."""

    def _check_X(self, X):
        """X for a fitted model, as an array (or CSR matrix) in the network's dtype.

        A 2-D float ndarray of the fitted width skips ``validate_data``: the finiteness
        check that ``cast`` does anyway is all such input still needs.
        """
        if not self._is_plain(X):
            X = validate_data(self, X, accept_sparse="csr", dtype=FLOATS, reset=False)
        return cast(X, self._dtype)

    def _is_plain(self, X) -> bool:
        """Whether X is a non-empty 2-D float ndarray of the fitted width, fitted
        without feature names: input that ``validate_data`` would pass as it is."""
        return (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.dtype.kind == "f"
            and X.shape[1] == self.n_features_in_
            and X.shape[0] > 0
            and self._no_names
        )

    def _forward(self, X, post=None) -> np.ndarray:
        """``post`` of the served logits of X, as a numpy array."""
        try:
            learner = self.learner_
        except AttributeError:
            check_is_fitted(self)
            raise
        # The hot path of predict_proba and decision_function (and of predict where
        # _cpu_logits does not apply).
        Xc = self._plain_rows(X)
        if Xc is not None:
            X_t = torch.from_numpy(Xc)
            out = forward(*learner.served, X_t, post, learner.gpu, 0, learner.mask)
            return out.cpu().numpy()
        return learner.forward(self._check_X(X), post)

    def _plain_rows(self, X, max_rows: float = math.inf) -> np.ndarray | None:
        """Plain X (:meth:`_is_plain`) of at most ``max_rows`` rows as a C-contiguous
        array of the network's dtype, when it needs no more than that cast: finite, and
        writeable (a tensor shares its memory); None for any other input, which goes
        through the checks that name the problem."""
        if not self._is_plain(X) or X.shape[0] > max_rows:
            return None
        Xc = np.ascontiguousarray(X, dtype=self._np_dtype)
        return Xc if math.isfinite(Xc.sum()) and Xc.flags.writeable else None

    def _cpu_logits(self, learner, X):
        """The served logits of X (the mask added) as a numpy array, for plain X (see
        :meth:`_is_plain`) of at most ``FORWARD_ROWS`` rows on the CPU: one forward pass
        and numpy for the rest, the hot path of ``predict`` (1 row: about 1.2 times a
        plain torch forward, against 1.55 through :meth:`_forward`); None for any other
        input, which takes :meth:`_forward`."""
        Xc = None if learner.gpu is not None else self._plain_rows(X, FORWARD_ROWS)
        if Xc is None:
            return None
        trunk, head = learner.served
        with torch.inference_mode():
            z = head(trunk(torch.from_numpy(Xc)))
        if not z.is_cpu or z.dtype not in (torch.float32, torch.float64):
            return None  # a module's own device or dtype: torch's path handles it
        out = z.numpy()
        if not math.isfinite(out.sum()):
            check_logits(z)  # an error naming the row, unless the sum alone overflowed
        return out if learner.mask is None else out + learner.mask.numpy()

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_tasks)
            Labels from ``classes_`` (of several tasks: column ``t`` from
            ``classes_[t]``).
        """
        learner = getattr(self, "learner_", None)
        tasks = None if learner is None else learner.tasks
        if tasks is None:
            z = None if learner is None else self._cpu_logits(learner, X)
            # numpy's argmax, as torch's, takes the first of equal logits
            idx = self._forward(X, argmax_rows) if z is None else z.argmax(1)
            return self.classes_[idx]
        idx = tasks.argmax(self._forward(X))
        columns = [classes[idx[:, t]] for t, classes in enumerate(self.classes_)]
        kinds = {c.dtype.kind for c in columns}
        dtype = np.result_type(*columns) if len(kinds) == 1 else object
        out = np.empty(idx.shape, dtype=dtype)
        for t, column in enumerate(columns):
            out[:, t] = column
        return out

    def predict_proba(self, X):
        """Class probabilities, the softmax of the logits.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), or list of such arrays
            Probabilities in the order of ``classes_``, in the network's ``dtype``;
            rows sum to one. Of several tasks, one array per task.
        """
        return self._per_task(X, _softmax)

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), or list of such arrays
            Log-probabilities in the order of ``classes_`` (of several tasks, one array
            per task).
        """
        return self._per_task(X, _log_softmax)

    def decision_function(self, X):
        """Logits of the head.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes), or a list
            For two classes, the logit of ``classes_[1]`` minus that of ``classes_[0]``;
            otherwise one logit per class. Of several tasks, one array per task.
        """
        return self._per_task(X, _decision)

    def _per_task(self, X, post):
        """``post`` of the served logits; of several tasks, of each task's logits, as a
        list of arrays."""
        tasks = self.learner_.tasks if hasattr(self, "learner_") else None
        if tasks is None:
            return self._forward(X, post)
        z = self._forward(X)
        return [post(torch.from_numpy(block)).numpy() for block in tasks.split(z)]

    # ------------------------------------------------------------------ skorch
    def to_skorch(self, **kwargs):
        """A skorch ``NeuralNetClassifier`` carrying a copy of the weights that predict.

        The skorch net computes ``head(trunk(X))`` with cross-entropy loss and the
        weights this estimator predicts with (the fused ones when ``fusion`` is set), so
        its ``predict_proba`` equals this estimator's (classes of a fixed label set that
        no row has shown yet get a bias of ``-inf``: probability 0 in both). Like every
        skorch net it expects ``X`` in the network's dtype (float32 by default) and its
        ``predict`` returns indices into ``classes_``.

        Parameters
        ----------
        **kwargs : dict
            Further arguments of ``NeuralNetClassifier`` (``max_epochs``,
            ``callbacks``, ...).

        Returns
        -------
        net : skorch.NeuralNetClassifier
            An initialized skorch net, ready to predict or to train further.

        Examples
        --------
        >>> import numpy as np
        >>> from skocl import OnlineFineTuneClassifier
        >>> X = np.random.RandomState(0).rand(60, 4).astype("float32")
        >>> y = (X[:, 0] > 0.5).astype(int)
        >>> clf = OnlineFineTuneClassifier(random_state=0).fit(X, y)
        >>> skorch_net = clf.to_skorch()
        >>> bool(np.allclose(skorch_net.predict_proba(X), clf.predict_proba(X), atol=1e-6))
        True
        """
        from skorch import NeuralNetClassifier

        check_is_fitted(self)
        module = TrunkHeadNet(*self.learner_.served_copy())
        params = dict(
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=OPTIMIZERS[self.optimizer],
            lr=self.lr,
            batch_size=self._settings().batch(200),
            train_split=None,
            classes=self.classes_,
            device=str(self.device_),
        )
        params.update(kwargs)
        skorch_net = NeuralNetClassifier(module, **params)
        return skorch_net.initialize()


def _softmax(z):
    return torch.softmax(z, dim=1)


def _log_softmax(z):
    return torch.log_softmax(z, dim=1)


def _decision(z):
    return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z
