"""OnlineFineTuneClassifier: the sklearn-facing estimator.

It validates input, encodes labels and keeps fitted state; the torch side (networks,
the update rules, seeding) lives in ``_network.py``.
"""

from __future__ import annotations

import copy
import math
import secrets
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from torch import nn

from . import _network as net
from ._continual import Anchor, ReplayMemory, empirical_fisher, fuse
from ._labels import labels_from_json, labels_to_json
from .exceptions import DriftDetectionUnavailableWarning, NonFiniteStepWarning

_FLOATS = (np.float64, np.float32)
_RESET_BY_VALIDATE = ("n_features_in_", "feature_names_in_")
# Below this mean |z| a chunk's inputs count as drawn like the replay memory's.
_SAME_INPUTS_Z = 2.0
# Rows used to estimate EWC's Fisher information.
_FISHER_ROWS = 256
# Fitted attributes that are plain JSON values (saved as they are by skocl.save).
_PLAIN_ATTRS = (
    "n_features_in_",
    "n_iter_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "n_samples_seen_",
    "n_skipped_steps_",
)


def _is_skorch_net(obj) -> bool:
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover - skorch is a core dependency
        return False
    return isinstance(obj, NeuralNet)


class OnlineFineTuneClassifier(ClassifierMixin, BaseEstimator):
    r"""A PyTorch classifier that is pretrained with ``fit`` and keeps learning online
    with ``partial_fit``.

    The network is a shared **trunk** (inputs to features) and a task **head** (features
    to one logit per class); predictions are ``softmax(head(trunk(X)))``. ``fit``
    pretrains every parameter; each ``partial_fit`` first updates the trunk on the new
    chunk, then fine-tunes the head on the same chunk with the trunk frozen.

    Parameters
    ----------
    module : None, nn.Module instance or class, or skorch net, default=None
        The network. ``None`` builds an MLP trunk (``hidden_layer_sizes``,
        ``activation``, ``dropout``) and a linear head. An ``nn.Module`` instance is
        deep-copied into ``module_`` and never trained in place; a class is
        instantiated with ``module_kwargs``. A fitted skorch ``NeuralNetClassifier``
        gives its trained ``module_`` and its ``classes_`` as the pretrained start
        (``clone`` turns a skorch net into an unfitted one: for searches, pass
        ``module=net.module_, classes=net.classes_``). The trunk and head are the
        attributes named by ``trunk_attr`` and ``head_attr``; an ``nn.Sequential``
        without them is split into all layers but the last (trunk) and the last
        (head). The head must return logits; the module's own ``forward`` is not used.
    module_kwargs : dict, default=None
        Keyword arguments for ``module`` when it is a class.
    trunk_attr : str, default="trunk"
        Attribute of the module holding the shared trunk.
    head_attr : str, default="head"
        Attribute of the module holding the task head.
    classes : array-like, default=None
        The full label set, fixed: labels outside it are an error. If None, ``fit``
        takes the labels of ``y`` and the label set grows when ``partial_fit`` meets
        new labels (unless its ``classes`` argument fixes it).
    hidden_layer_sizes : tuple of int, default=(256,)
        Widths of the default trunk's hidden layers.
    activation : {"relu", "tanh", "logistic", "gelu", "identity"}, default="relu"
        Activation of the default trunk.
    dropout : float, default=0.0
        Dropout probability after each hidden layer of the default trunk.
    optimizer : {"adam", "adamw", "sgd"}, default="adam"
        Optimizer for pretraining, the trunk update and the head fine-tune
        (``"sgd"`` uses momentum 0.9).
    lr : float, default=1e-3
        Learning rate of pretraining in ``fit``.
    weight_decay : float, default=0.0
        Weight decay of every optimizer.
    batch_size : int or "auto", default="auto"
        Mini-batch size; ``"auto"`` is ``min(200, n_samples)``.
    max_iter : int, default=200
        Maximum number of epochs of ``fit``.
    tol : float, default=1e-4
        ``fit`` stops when the training loss (or, with early stopping, the validation
        accuracy) has not improved by at least ``tol`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=10
        See ``tol``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data in ``fit`` (stratified), stop when
        its accuracy stops improving and keep the best weights, as ``MLPClassifier``.
    validation_fraction : float, default=0.1
        Share of the data held out when ``early_stopping=True``.
    trunk_lr : float, default=1e-3
        Learning rate of the trunk update in ``partial_fit``. ``0`` freezes the trunk.
    trunk_epochs : int, default=1
        Passes over each chunk in the trunk update.
    head_lr : float, default=1e-2
        Learning rate of the head fine-tune in ``partial_fit``.
    head_steps : int, default=3
        Full-chunk gradient steps of the head fine-tune. ``0`` skips it.
    memory_size : int, default=2000
        Rows kept in the replay memory, replayed in every ``partial_fit`` against
        forgetting; ``fit`` fills it with a sample of its training rows. ``0`` turns
        replay off.
    memory_strategy : {"class_balanced", "reservoir"}, default="class_balanced"
        Which rows the memory keeps: an equal share per class seen, each a uniform
        sample of that class, or a uniform sample of every row seen.
    regularization : {"l2sp", "ewc"} or None, default=None
        Pull of the trunk toward its pretrained weights in ``partial_fit``: L2-SP, or
        EWC weighted by the Fisher information estimated at the end of ``fit``.
    reg_strength : float, default=1.0
        Strength :math:`\lambda` of that pull.
    fusion : {"ema", "wise"} or None, default=None
        Weights used for prediction: an exponential moving average of the weights after
        each ``partial_fit`` (``"ema"``), or the WiSE-FT interpolation between the
        pretrained and the current weights (``"wise"``). None predicts with the current
        weights.
    ema_decay : float, default=0.9
        Decay :math:`m` of the EMA fusion.
    wise_alpha : float, default=0.5
        Weight :math:`\alpha` of the current weights in WiSE-FT fusion.
    drift_detector : "auto", detector or None, default="auto"
        A detector with river's interface (ADWIN, PageHinkley, KSWIN, ...), fed with the
        prequential error of each chunk, predicted before it is learned. ``"auto"`` is
        river's ADWIN when river is installed, no detection otherwise. The detector
        passed is cloned at each (re)start, never updated in place.
    dtype : {"float32", "float64"}, default="float32"
        Floating point type of the network.
    device : {"cpu", "cuda", "auto"} or str, default="cpu"
        Where the network lives and computes; ``"auto"`` picks CUDA when available.
        The network, its optimizers and the replay memory live there; input rows are
        copied there a mini-batch, a chunk or a prediction slice at a time (the user
        guide's "GPUs" section lists what crosses).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and dropout. An int gives bit-identical
        results for ``fit`` and for any sequence of ``partial_fit`` calls. The global
        torch and numpy random states are never touched.
    verbose : int, default=0
        Print the loss of each epoch of ``fit`` when positive.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``, when ``X`` has string column names.
    module_ : torch.nn.Module
        The trained network.
    device_ : torch.device
        The device the network lives on.
    n_iter_ : int
        Epochs run by ``fit``, plus one per ``partial_fit`` call.
    loss_curve_ : list of float
        Mean training loss of each epoch of ``fit``, then of each ``partial_fit``
        trunk update.
    validation_scores_ : list of float or None
        Validation accuracy of each epoch when ``early_stopping=True``.
    best_validation_score_ : float or None
        Best validation accuracy when ``early_stopping=True``.
    n_samples_seen_ : int
        Rows learned from by ``fit`` and ``partial_fit`` since the last ``fit``.
    n_skipped_steps_ : int
        Gradient steps skipped because their loss or gradients were not finite.
    drift_detector_ : object or None
        The detector in use (a clone of ``drift_detector``).
    drifts_ : list of int
        Values of ``n_samples_seen_`` at which drifts were detected.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : numpy MLP with ``partial_fit``.
    sklearn.linear_model.SGDClassifier : linear models with ``partial_fit``.
    skorch.NeuralNetClassifier : general-purpose sklearn wrapper for torch modules.

    Notes
    -----
    Write :math:`f_\theta` for the trunk, :math:`g_\phi` for the head and

    .. math::
        L(\theta, \phi; B) = \frac{\sum_{i \in B} w_i\,
        \ell_{\mathrm{CE}}(g_\phi(f_\theta(x_i)), y_i)}{\sum_{i \in B} w_i}

    for the weighted cross-entropy of a mini-batch :math:`B`. ``fit`` minimises
    :math:`L` over :math:`(\theta, \phi)` with mini-batch steps of the optimizer at rate
    ``lr``. ``partial_fit`` on a chunk :math:`C` does, in order:

    1. trunk update: for each mini-batch :math:`B \subseteq C` (``trunk_epochs``
       shuffled passes), :math:`\theta \leftarrow \mathrm{opt}_\theta(\theta,
       \nabla_\theta L(\theta, \phi; B))` at rate ``trunk_lr``; :math:`\phi` is fixed;
    2. head fine-tune: with :math:`\theta` frozen and the trunk in eval mode, compute
       :math:`z_i = f_\theta(x_i)` once for :math:`i \in C`, then ``head_steps`` times
       :math:`\phi \leftarrow \mathrm{opt}_\phi(\phi, \nabla_\phi \sum_{i \in C} w_i
       \ell_{\mathrm{CE}}(g_\phi(z_i), y_i) / \sum_{i\in C} w_i)` at rate ``head_lr``.

    :math:`\mathrm{opt}_\theta` and :math:`\mathrm{opt}_\phi` are two optimizers whose
    state (Adam's moments) persists across ``partial_fit`` calls. A step whose loss or
    gradients are not finite is skipped with a :class:`~skocl.exceptions.NonFiniteStepWarning`
    and counted in ``n_skipped_steps_``; an update that still leaves a weight that is not
    finite is undone, so the weights never become NaN.

    Continual learning. With a replay memory :math:`M`, every trunk mini-batch
    :math:`B` is joined by :math:`\min(|B|, |M|)` rows drawn from :math:`M`, and the head
    fine-tune runs on the chunk and :math:`\min(|C|, |M|)` replayed rows weighing as
    much as the chunk; the
    chunk is then offered to the memory (as the pretraining rows are at the end of
    ``fit``). With ``regularization``, the trunk gradient
    gains :math:`\lambda F \odot (\theta - \theta^*)` (:math:`F = 1` for L2-SP, Li
    et al. 2018; the diagonal empirical Fisher for EWC, Kirkpatrick et al. 2017), where
    :math:`\theta^*` are the weights at the end of ``fit``, those of a user's module as
    given when there was no ``fit``, and otherwise those after the first
    ``partial_fit``. Fusion, the last step, sets the served
    weights to :math:`\bar w \leftarrow m \bar w + (1 - m) w` (EMA) or
    :math:`(1-\alpha) w^* + \alpha w` (WiSE-FT, Wortsman et al. 2022). On a detected
    drift on which the chunk's error rises above its recent level (an exponential
    average of past chunks' errors), the replay rows of the chunk's classes are dropped
    when the chunk's inputs look like the memory's (the concept changed; new classes or
    domains keep them), and the EMA restarts. See the user guide on continual learning.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skocl import OnlineFineTuneClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> clf = OnlineFineTuneClassifier(max_iter=30, random_state=0).fit(X[:1000], y[:1000])
    >>> for start in range(1000, 1700, 100):
    ...     clf = clf.partial_fit(X[start:start + 100], y[start:start + 100])
    >>> clf.n_samples_seen_
    1700
    >>> bool(clf.score(X[1700:], y[1700:]) > 0.9)
    True
    """

    _parameter_constraints: dict = {
        "module": "no_validation",  # checked in _make_module, which names the type
        "module_kwargs": [None, dict],
        "trunk_attr": [str],
        "head_attr": [str],
        "classes": ["array-like", None],
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(set(net.ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "optimizer": [StrOptions(set(net.OPTIMIZERS))],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "trunk_lr": [Interval(Real, 0, None, closed="left")],
        "trunk_epochs": [Interval(Integral, 0, None, closed="left")],
        "head_lr": [Interval(Real, 0, None, closed="left")],
        "head_steps": [Interval(Integral, 0, None, closed="left")],
        "memory_size": [Interval(Integral, 0, None, closed="left")],
        "memory_strategy": [StrOptions({"reservoir", "class_balanced"})],
        "regularization": [StrOptions({"l2sp", "ewc"}), None],
        "reg_strength": [Interval(Real, 0, None, closed="left")],
        "fusion": [StrOptions({"ema", "wise"}), None],
        "ema_decay": [Interval(Real, 0, 1, closed="left")],
        "wise_alpha": [Interval(Real, 0, 1, closed="both")],
        "drift_detector": [StrOptions({"auto"}), HasMethods(["update"]), None],
        "dtype": [StrOptions(set(net.DTYPES))],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        module=None,
        *,
        module_kwargs=None,
        trunk_attr="trunk",
        head_attr="head",
        classes=None,
        hidden_layer_sizes=(256,),
        activation="relu",
        dropout=0.0,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size="auto",
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        trunk_lr=1e-3,
        trunk_epochs=1,
        head_lr=1e-2,
        head_steps=3,
        memory_size=2000,
        memory_strategy="class_balanced",
        regularization=None,
        reg_strength=1.0,
        fusion=None,
        ema_decay=0.9,
        wise_alpha=0.5,
        drift_detector="auto",
        dtype="float32",
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        self.module = module
        self.module_kwargs = module_kwargs
        self.trunk_attr = trunk_attr
        self.head_attr = head_attr
        self.classes = classes
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.trunk_lr = trunk_lr
        self.trunk_epochs = trunk_epochs
        self.head_lr = head_lr
        self.head_steps = head_steps
        self.memory_size = memory_size
        self.memory_strategy = memory_strategy
        self.regularization = regularization
        self.reg_strength = reg_strength
        self.fusion = fusion
        self.ema_decay = ema_decay
        self.wise_alpha = wise_alpha
        self.drift_detector = drift_detector
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Pretrain every parameter of the network on ``(X, y)``.

        Earlier calls to ``fit`` and ``partial_fit`` are forgotten. Training starts
        from the user's ``module`` when one is given, from a fresh MLP otherwise.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; sparse matrices are densified one mini-batch at a time.
        y : array-like of shape (n_samples,)
            Labels of any type (ints, strings, booleans).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples in the loss.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y_idx, sw, (classes, fixed), module, trunk, head, seed = self._prepare_start(
            X, y, sample_weight, classes=None, first_partial_fit=False
        )
        self._start(classes, fixed, module, trunk, head, seed)
        self._pretrain(X, y_idx, sw)
        chunk = net.make_chunk(X, y_idx, None, self._torch_dtype, self.device_)
        self._set_pretrained(chunk)
        if self._replay_memory() is not None:
            # What pretraining learned is what replay should keep from forgetting.
            with self._rng.generator() as gen:
                net.offer_to_memory(self._memory, chunk, self._batch_size(len(chunk)), gen)
        self._fuse()
        self.n_samples_seen_ = X.shape[0]
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Learn from one chunk: update the trunk, then fine-tune the head.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The chunk.
        y : array-like of shape (n_samples,)
            Its labels.
        classes : array-like of shape (n_classes,), default=None
            Every label the stream can hold; it fixes the label set, and a label
            outside it is an error. On later calls it must equal ``classes_``. When
            neither this argument on the first call, the ``classes`` parameter nor a
            skorch ``module`` fixes the label set, it grows: a chunk with new labels
            adds a head output per new class, while the known classes keep their
            weights and optimizer state exactly.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the chunk's samples.

        Returns
        -------
        self : object
            The updated estimator.
        """
        if not hasattr(self, "module_"):
            return self._first_partial_fit(X, y, classes, sample_weight)

        X, y_idx, sw, grown = self._validate_chunk(X, y, classes, sample_weight)
        if grown is not None:
            self._add_classes(grown)
        # One chunk for the prediction before learning and the learning: on a GPU, the
        # rows copied for the one serve the other.
        chunk = net.make_chunk(X, y_idx, sw, self._torch_dtype, self.device_)
        if self.drift_detector_ is not None:
            self._watch_drift(X, y_idx, chunk)
        return self._learn_chunk(chunk)

    def _learn_chunk(self, chunk):
        if self._trunk_opt is None:
            self._make_online_optimizers()
        # Learning rates are read on every call, so set_params between calls takes effect.
        for opt, lr in ((self._trunk_opt, self.trunk_lr), (self._head_opt, self.head_lr)):
            for group in opt.param_groups:
                group["lr"], group["weight_decay"] = lr, self.weight_decay
        if self._pretrained is None and self._user_module:
            self._set_pretrained(chunk)  # a user's module is the pretrained start
        with self._rng.scope(self.device_, self._stochastic) as gen:
            loss, skipped = net.online_update(
                self._trunk,
                self._head,
                self._trunk_opt,
                self._head_opt,
                self._trunk_params,
                self._head_params,
                chunk,
                batch_size=self._batch_size(len(chunk)),
                trunk_epochs=self.trunk_epochs if self.trunk_lr > 0 else 0,
                head_steps=self.head_steps,
                gen=gen,
                memory=self._replay_memory(),
                penalty=self._penalty(),
            )
        if self._pretrained is None:
            self._set_pretrained(chunk)  # from scratch: the first update is the start
        self._fuse()
        self.n_iter_ += 1
        self.loss_curve_.append(loss)
        self.n_samples_seen_ += len(chunk)
        self._count_skipped(skipped)
        return self

    # ------------------------------------------------------------------ continual
    def _replay_memory(self):
        if not self.memory_size:
            return None
        if self._memory is None:
            self._memory = ReplayMemory(
                self.memory_size,
                self.memory_strategy,
                self.n_features_in_,
                self._torch_dtype,
                self.device_,
            )
        self._memory.capacity, self._memory.strategy = self.memory_size, self.memory_strategy
        return self._memory

    def _set_pretrained(self, chunk):
        """Remember the pretrained weights: the anchor of L2-SP and EWC and the start
        point of WiSE-FT fusion. EWC's Fisher is estimated on up to 256 rows."""
        self._pretrained = [p.detach().clone() for p in self._trunk_params + self._head_params]
        fisher = None
        if self.regularization == "ewc":
            n = min(len(chunk), _FISHER_ROWS)
            X = chunk.rows(slice(0, n))
            fisher = empirical_fisher(self._trunk, self._head, self._trunk_params, X, chunk.y[:n])
        self._anchor = Anchor(self._trunk_params, fisher)

    def _penalty(self):
        if self.regularization is None or self._anchor is None or not self.reg_strength:
            return None
        if self.regularization == "ewc" and self._anchor.fisher is None:
            raise ValueError(
                "regularization='ewc' needs the Fisher information estimated when the "
                "model was (pre)trained: set it before fit or the first partial_fit."
            )
        anchor, strength = self._anchor, self.reg_strength
        if self.regularization == "l2sp" and anchor.fisher is not None:
            anchor = Anchor.__new__(Anchor)
            anchor.weights, anchor.fisher = self._anchor.weights, None
        return lambda params, grads: anchor.grads(params, grads, strength)

    def _fuse(self):
        """The last step of the online update: blend the weights used for prediction
        with their history (EMA) or with the pretrained weights (WiSE-FT)."""
        if self.fusion is None:
            self._serve = (self._trunk, self._head)
            return
        if self._serve[0] is self._trunk:
            self._serve = copy.deepcopy((self._trunk, self._head))
            if self.fusion == "ema":
                return  # the average starts at the current weights
        current = self._trunk_params + self._head_params
        serving = [p for part in self._serve for p in part.parameters() if p.requires_grad]
        if self.fusion == "ema":
            fuse(serving, current, 1.0 - self.ema_decay)
        else:
            with torch.no_grad():
                for s, p0, p in zip(serving, self._pretrained, current):
                    s.copy_(torch.lerp(p0, p, self.wise_alpha))
        for part, src in zip(self._serve, (self._trunk, self._head)):
            for b_serve, b in zip(part.buffers(), src.buffers()):
                b_serve.copy_(b)

    def _forget_contradicted(self, X, y_idx):
        """After a drift, drop the replay rows that the new data contradicts.

        A drift in the error can be a new concept (the same inputs now carry other
        labels: old rows must go) or new inputs (new classes, a new domain: old rows
        stay valid and keep guarding against forgetting). When the chunk's inputs look
        like the memory's (mean |z| of the per-feature mean difference below 2), the
        memory rows of the chunk's classes are dropped; otherwise they are kept.
        """
        Xc = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
        Xm = self._memory.X.double()  # its moments are computed where it lives
        m_mean, m_var = (v.cpu().numpy() for v in (Xm.mean(0), Xm.var(0, correction=0)))
        var = Xc.var(axis=0) / len(Xc) + m_var / len(Xm)
        diff = np.abs(Xc.mean(axis=0) - m_mean)
        z = np.divide(diff, np.sqrt(var), out=np.zeros_like(diff), where=var > 0)
        z[(var == 0) & (diff > 0)] = np.inf
        if np.mean(np.minimum(z, 1e6)) < _SAME_INPUTS_Z:
            self._memory.drop_classes(np.unique(y_idx))

    def _watch_drift(self, X, y_idx, chunk):
        """Feed the prequential error on a chunk (predicted before learning) to the
        drift detector; on a drift, react (see the Notes of the class)."""
        errors = net.predict_chunk(*self._serve, chunk, self._batch_size(len(chunk))) != y_idx
        self._drift_errors.append(errors)
        drifted = False
        for i, wrong in enumerate(errors.tolist()):
            self.drift_detector_.update(int(wrong))
            if self.drift_detector_.drift_detected:
                self.drifts_.append(self.n_samples_seen_ + i + 1)
                drifted = True
        # Detectors such as ADWIN also fire when the error falls (the model got
        # better): only a rise of the error, against its recent level, calls for a
        # reaction.
        rate = float(errors.mean())
        level = self._error_level
        self._error_level = rate if level is None else 0.8 * level + 0.2 * rate
        if drifted and (level is None or rate > level):
            if self._memory is not None and len(self._memory):
                self._forget_contradicted(X, y_idx)
            if self.fusion == "ema":
                self._serve = (self._trunk, self._head)  # restart the average

    def _first_partial_fit(self, X, y, classes, sample_weight):
        X, y_idx, sw, (classes, fixed), module, trunk, head, seed = self._prepare_start(
            X, y, sample_weight, classes=classes, first_partial_fit=True
        )
        self._start(classes, fixed, module, trunk, head, seed)
        self.n_iter_ = 0
        self.loss_curve_ = []
        self.n_samples_seen_ = 0
        return self._learn_chunk(net.make_chunk(X, y_idx, sw, self._torch_dtype, self.device_))

    # ------------------------------------------------------------------ validation
    def _prepare_start(self, X, y, sample_weight, classes, first_partial_fit):
        """Validate a call that (re)starts the model and build its network, storing
        nothing but what ``validate_data`` resets, which is restored on error: a failed
        call leaves the estimator as it was."""
        saved = {k: vars(self)[k] for k in _RESET_BY_VALIDATE if k in vars(self)}
        try:
            X, y = validate_data(self, X, y, accept_sparse="csr", dtype=_FLOATS, reset=True)
            check_classification_targets(y)
            X = self._cast(X, self.dtype)
            sw = self._check_weights(sample_weight, X)
            classes, fixed = self._start_classes(classes, y, first_partial_fit)
            y_idx = _encode(classes, y)
            seed = self._draw_seed()
            module, trunk, head = self._make_module(len(classes), X, seed)
        except BaseException:
            for k in _RESET_BY_VALIDATE:
                vars(self).pop(k, None)
            vars(self).update(saved)
            raise
        return X, y_idx, sw, (classes, fixed), module, trunk, head, seed

    def _start_classes(self, classes, y, first_partial_fit):
        """The label set of a (re)start: the ``classes`` argument of partial_fit, the
        ``classes`` parameter or a skorch module's classes, or (in fit) y's labels."""
        given = self.classes
        if _is_skorch_net(self.module):
            if not getattr(self.module, "initialized_", False):
                raise ValueError(
                    "module is a skorch net that is not initialized or fitted. sklearn's "
                    "clone() (used by GridSearchCV and cross_val_score) drops a skorch "
                    "net's weights: there, pass module=net.module_, classes=net.classes_."
                )
            if given is None:
                given = getattr(self.module, "classes_", None)
        given = None if given is None else unique_labels(given)
        if classes is None:
            classes = given
        elif given is not None and not np.array_equal(unique_labels(classes), given):
            raise ValueError(
                f"classes={classes!r} differs from the label set {given!r} given by the "
                "classes parameter or the skorch module."
            )
        fixed = classes is not None
        if classes is None:
            classes = y  # a label set that grows as new labels arrive
        classes = unique_labels(classes)
        if len(classes) < 2 and (fixed or not first_partial_fit):
            raise ValueError(
                f"{'partial_fit' if first_partial_fit else 'fit'} needs at least 2 classes; "
                f"got 1 class: {classes[0]!r}."
            )
        return classes, fixed

    def _validate_chunk(self, X, y, classes, sample_weight):
        """Validate a chunk for a fitted model; raises before anything changes."""
        if classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                f"was: {self.classes_!r}"
            )
        X = self._check_X(X)
        if type(y) is not np.ndarray or y.ndim != 1:
            y = column_or_1d(y, warn=True)
        if y.shape[0] != X.shape[0]:
            check_consistent_length(X, y)
        y_idx, grown = self._encode_or_grow(y)
        sw = self._check_weights(sample_weight, X)
        return X, y_idx, sw, grown

    def _encode_or_grow(self, y):
        """Encode y; with a label set that is not fixed, also return the grown classes
        when y holds new labels (nothing changes until ``_add_classes``)."""
        try:
            return _encode(self.classes_, y), None
        except ValueError as exc:
            if self._fixed_classes:
                raise ValueError(
                    f"{exc} The label set was fixed by `classes`; labels outside it are rejected."
                ) from None
            try:
                grown = unique_labels(self.classes_, y)
            except ValueError as mix:
                raise ValueError(f"{exc} {mix}") from None
            layer = net.output_layer(self._head, len(self.classes_))
            if layer is None:
                raise ValueError(
                    f"{exc} New classes need a head whose output layer is an nn.Linear "
                    f"with one output per class; {type(self._head).__name__} is not. "
                    "Pass every label up front with `classes`."
                ) from None
            return _encode(grown, y), grown

    def _add_classes(self, grown):
        """Grow the head to the label set ``grown``: known classes keep their weights
        and optimizer state exactly; new ones start as a fresh nn.Linear row would."""
        positions = np.searchsorted(grown, self.classes_)
        layer = net.output_layer(self._head, len(self.classes_))
        optimizers = [o for o in (self._head_opt, self._trunk_opt) if o is not None]
        with self._rng.generator() as gen:
            pairs = net.grow_linear(layer, positions, len(grown), optimizers, gen)
        n_trunk = len(self._trunk_params)
        pretrained = (
            None
            if self._pretrained is None
            else dict(zip(map(id, self._head_params), self._pretrained[n_trunk:]))
        )
        self._head_params = [p for p in self._head.parameters() if p.requires_grad]
        if self._memory is not None:
            self._memory.remap(positions)
        if self.fusion is not None and self._serve[0] is not self._trunk:
            layer = net.output_layer(self._serve[1], len(self.classes_))
            with self._rng.generator() as gen:
                net.grow_linear(layer, positions, len(grown), [], gen)
        if pretrained is not None:
            # Known classes keep their pretrained rows; new classes, which have none,
            # start from their initial rows.
            idx = torch.as_tensor(positions, device=self.device_)
            for old, new in pairs:
                start = new.detach().clone()
                start[idx] = pretrained.pop(id(old))
                pretrained[id(new)] = start
            self._pretrained[n_trunk:] = [pretrained[id(p)] for p in self._head_params]
        self.classes_ = grown

    def _check_X(self, X):
        """X for a fitted model, as an array (or CSR matrix) in the network's dtype.

        A 2-D float ndarray of the fitted width skips ``validate_data``: the finiteness
        check that ``_cast`` does anyway is all such input still needs.
        """
        if not self._is_plain(X):
            X = validate_data(self, X, accept_sparse="csr", dtype=_FLOATS, reset=False)
        return self._cast(X, self._dtype)

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

    def _cast(self, X, dtype):
        """X in the network's dtype; an error names the first value that is NaN or
        infinite there (including finite float64 values beyond the float32 range)."""
        np_dtype = np.float32 if dtype == "float32" else np.float64
        if sp.issparse(X):
            with np.errstate(over="ignore"):
                X = X.astype(np_dtype, copy=False)
            values = X.data
        else:
            with np.errstate(over="ignore"):  # reported below, with its row and column
                X = values = np.asarray(X, dtype=np_dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            total = values.sum()
        if not math.isfinite(total) and not np.isfinite(values).all():
            if sp.issparse(X):
                coo = X.tocoo()
                bad = ~np.isfinite(coo.data)
                row, col, value = coo.row[bad][0], coo.col[bad][0], coo.data[bad][0]
            else:
                row, col = np.argwhere(~np.isfinite(X))[0]
                value = X[row, col]
            raise ValueError(
                f"Input X contains NaN or infinity in {dtype} (the network's dtype): "
                f"{value} at row {row}, column {col}."
            )
        return X

    @staticmethod
    def _check_weights(sample_weight, X):
        if sample_weight is None:
            return None
        sw = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        if not np.isfinite(sw).all():
            raise ValueError("sample_weight contains NaN or infinity.")
        if not sw.any():
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return sw

    # ------------------------------------------------------------------ set-up
    def _make_module(self, n_classes, X, seed):
        """Build or deep-copy the network, find its trunk and head, and check that it
        maps X's width to ``n_classes`` logits. Nothing is stored on self."""
        source, n_features = self.module, X.shape[1]
        if source is None:
            module = net.seeded_build(
                seed,
                net.build_mlp,
                n_features,
                n_classes,
                tuple(self.hidden_layer_sizes),
                self.activation,
                self.dropout,
            )
        elif _is_skorch_net(source):
            module = copy.deepcopy(source.module_)
        elif isinstance(source, nn.Module):
            module = copy.deepcopy(source)
        elif isinstance(source, type) and issubclass(source, nn.Module):
            module = net.seeded_build(seed, source, **(self.module_kwargs or {}))
        else:
            raise TypeError(
                f"module must be None, a torch.nn.Module instance or class, or a fitted "
                f"skorch NeuralNetClassifier; got {type(source).__name__}."
            )
        if _is_skorch_net(source) and isinstance(source.criterion_, nn.NLLLoss):
            # skorch's NLLLoss nets end in a softmax; skocl's heads return logits.
            module = net.strip_softmax(module)
        trunk, head = net.split_module(module, self.trunk_attr, self.head_attr)
        if _is_skorch_net(source) and isinstance(source.criterion_, nn.NLLLoss):
            head = net.strip_softmax(head)
        for name, part in (("trunk", trunk), ("head", head)):
            if not any(p.requires_grad for p in part.parameters()):
                raise ValueError(f"The module's {name} has no trainable parameters.")
        module = module.to(device=self._resolve_device(), dtype=net.DTYPES[self.dtype])
        if source is not None:
            self._check_module_output(trunk, head, X, n_classes)
        return module, trunk, head

    def _check_module_output(self, trunk, head, X, n_classes):
        rows = X[:2].toarray() if sp.issparse(X) else X[:2]
        x = net.to_tensor(np.asarray(rows), net.DTYPES[self.dtype], self._resolve_device())
        trunk.eval()
        head.eval()
        try:
            out = net.forward(trunk, head, x)
        except Exception as exc:
            raise ValueError(
                f"module cannot compute head(trunk(X)) on X with {X.shape[1]} features: {exc}"
            ) from exc
        if out.ndim != 2 or out.shape[1] != n_classes:
            raise ValueError(
                f"module's head returns output of shape {tuple(out.shape)} for 2 rows, "
                f"expected (2, {n_classes}): one logit for each of the {n_classes} classes."
            )

    def _resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available here.")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(
                f"device={self.device!r} but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
        return device

    def _draw_seed(self) -> int:
        # random_state=None must not draw from numpy's global generator.
        if self.random_state is None:
            return secrets.randbits(62)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _start(self, classes, fixed, module, trunk, head, seed):
        """Forget everything and hold the new network."""
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            if key not in ("n_features_in_", "feature_names_in_"):
                delattr(self, key)
        self.classes_ = classes
        self._fixed_classes = fixed
        self.module_ = module.eval()
        self.device_ = self._resolve_device()
        self._gpu = None if self.device_.type == "cpu" else self.device_
        self._dtype = self.dtype
        self._torch_dtype = net.DTYPES[self.dtype]
        self._np_dtype = np.dtype(self.dtype)
        self._no_names = not hasattr(self, "feature_names_in_")
        self._trunk, self._head = trunk, head
        self._trunk_params = [p for p in trunk.parameters() if p.requires_grad]
        self._head_params = [p for p in head.parameters() if p.requires_grad]
        self._stochastic = net.has_stochastic_layers(module)
        self._rng = net.Rng(seed)
        self._trunk_opt = self._head_opt = None
        self._serve = (trunk, head)
        self._user_module = self.module is not None
        self._memory = self._anchor = self._pretrained = None
        self.drift_detector_ = _make_detector(self.drift_detector)
        self.drifts_ = []
        self._drift_errors = []
        self._error_level = None
        self.n_skipped_steps_ = 0
        self.validation_scores_ = None
        self.best_validation_score_ = None

    def _make_online_optimizers(self):
        make = net.make_optimizer
        self._trunk_opt = make(
            self.optimizer, self._trunk_params, self.trunk_lr, self.weight_decay
        )
        self._head_opt = make(self.optimizer, self._head_params, self.head_lr, self.weight_decay)

    def _batch_size(self, n):
        return min(200, n) if self.batch_size == "auto" else self.batch_size

    def _count_skipped(self, skipped):
        if skipped:
            self.n_skipped_steps_ += skipped
            warnings.warn(
                f"{skipped} gradient step(s) had a non-finite loss or gradient and were "
                "skipped; the weights are unchanged by them. Lower the learning rate or "
                "scale the inputs.",
                NonFiniteStepWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ pretraining
    def _pretrain(self, X, y_idx, sw):
        X_val = y_val = None
        if self.early_stopping:
            X, X_val, y_idx, y_val, sw = self._split_validation(X, y_idx, sw)
        chunk = net.make_chunk(X, y_idx, sw, self._torch_dtype, self.device_)
        params = self._trunk_params + self._head_params
        opt = net.make_optimizer(self.optimizer, params, self.lr, self.weight_decay)
        batch_size = self._batch_size(len(chunk))
        self.loss_curve_ = []
        self.validation_scores_ = [] if self.early_stopping else None
        best, best_state, stall = np.inf, None, 0
        skipped = 0
        self.n_iter_ = 0
        for epoch in range(self.max_iter):
            txn = net.Transaction(params, [opt])
            self.module_.train()
            with self._rng.scope(self.device_, self._stochastic) as gen:
                loss, taken, s = net.train_epoch(
                    self._trunk, self._head, opt, params, chunk, batch_size, gen
                )
            self.module_.eval()
            if not txn.finite():  # too high a learning rate: undo the epoch
                txn.rollback()
                loss, s = float("nan"), s + taken
            skipped += s
            self.n_iter_ = epoch + 1
            self.loss_curve_.append(loss)
            if self.early_stopping:
                score = float(np.mean(self._forward(X_val, _argmax) == y_val))
                self.validation_scores_.append(score)
                objective = -score
            else:
                objective = loss
            if self.verbose:
                print(
                    f"epoch {epoch + 1}: loss {loss:.6f}"
                    + (f", validation accuracy {score:.4f}" if self.early_stopping else "")
                )
            if objective > best - self.tol:
                stall += 1
            else:
                stall = 0
            if objective < best:
                best = objective
                if self.early_stopping:
                    best_state = net.snapshot(self.module_)
            if stall > self.n_iter_no_change:
                break
        else:
            warnings.warn(
                f"Stopped after max_iter={self.max_iter} epochs before the "
                "optimization converged; raise max_iter or tol.",
                ConvergenceWarning,
                stacklevel=3,
            )
        if best_state is not None:
            self.module_.load_state_dict(best_state)
            self.best_validation_score_ = -best
        self._count_skipped(skipped)

    def _split_validation(self, X, y_idx, sw):
        seed = (
            int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            if self.random_state is not None
            else secrets.randbits(31)
        )
        idx = np.arange(X.shape[0])
        counts = np.bincount(y_idx)
        stratify = y_idx if counts[counts > 0].min() >= 2 else None
        train, val = train_test_split(
            idx, test_size=self.validation_fraction, random_state=seed, stratify=stratify
        )
        if len(train) == 0 or len(val) == 0:
            raise ValueError(
                f"early_stopping needs at least 2 samples to split off a validation set; "
                f"got {X.shape[0]}."
            )
        sw_train = None if sw is None else sw[train]
        return X[train], X[val], y_idx[train], y_idx[val], sw_train

    # ------------------------------------------------------------------ persistence
    def _export_state(self) -> tuple[dict, dict]:
        """Fitted state as JSON-able values and a dict of tensors (see skocl.save)."""
        check_is_fitted(self)
        attrs = {k: getattr(self, k) for k in _PLAIN_ATTRS}
        attrs["classes_"] = labels_to_json(self.classes_)
        attrs["fixed_classes"] = self._fixed_classes
        if "feature_names_in_" in vars(self):
            attrs["feature_names_in_"] = self.feature_names_in_.tolist()
        tensors = {"module": self.module_.state_dict(), "rng": self._rng.state}
        if self._trunk_opt is not None:
            tensors["trunk_opt"] = self._trunk_opt.state_dict()
            tensors["head_opt"] = self._head_opt.state_dict()
        if self._memory is not None:
            tensors["memory"] = self._memory.state_dict()
        if self._pretrained is not None:
            tensors["pretrained"] = [p.cpu() for p in self._pretrained]
            tensors["anchor"] = self._anchor.state_dict()
        if self._serve[0] is not self._trunk:
            tensors["serve"] = [part.state_dict() for part in self._serve]
        # A drift detector is rebuilt on load by replaying the errors it was fed.
        errors = np.concatenate(self._drift_errors) if self._drift_errors else np.zeros(0, bool)
        tensors["drift_errors"] = torch.from_numpy(np.packbits(errors))
        attrs["n_drift_errors"] = len(errors)
        attrs["drifts_"] = list(self.drifts_)
        attrs["error_level"] = self._error_level
        return attrs, net.to_cpu(tensors)

    def _import_state(self, attrs: dict, tensors: dict) -> OnlineFineTuneClassifier:
        """Rebuild the fitted state written by ``_export_state`` on this estimator,
        whose parameters (``module`` included) must be those it was saved with."""
        classes = labels_from_json(attrs["classes_"])
        X = np.zeros((2, attrs["n_features_in_"]), dtype=np.dtype(self.dtype))
        module, trunk, head = self._make_module(len(classes), X, seed=0)
        try:
            module.load_state_dict(tensors["module"])
        except RuntimeError as exc:
            raise ValueError(
                f"The saved weights do not fit the module {type(module).__name__}: {exc}"
            ) from exc
        self.n_features_in_ = attrs["n_features_in_"]
        if "feature_names_in_" in attrs:
            self.feature_names_in_ = np.asarray(attrs["feature_names_in_"], dtype=object)
        self._start(classes, attrs["fixed_classes"], module, trunk, head, seed=0)
        self._rng.state = tensors["rng"]
        if "trunk_opt" in tensors:
            self._make_online_optimizers()
            self._trunk_opt.load_state_dict(tensors["trunk_opt"])
            self._head_opt.load_state_dict(tensors["head_opt"])
        if "memory" in tensors:
            self._replay_memory().load_state_dict(tensors["memory"])
        if "pretrained" in tensors:
            self._pretrained = [p.to(self.device_) for p in tensors["pretrained"]]
            self._anchor = Anchor.from_state_dict(tensors["anchor"], self.device_)
        if "serve" in tensors:
            self._serve = copy.deepcopy((trunk, head))
            for part, state in zip(self._serve, tensors["serve"]):
                part.load_state_dict(state)
        errors = np.unpackbits(tensors["drift_errors"].numpy(), count=attrs["n_drift_errors"])
        if self.drift_detector_ is not None:
            for wrong in errors.tolist():
                self.drift_detector_.update(wrong)
        self._drift_errors = [errors.astype(bool)] if len(errors) else []
        self.drifts_ = list(attrs["drifts_"])
        self._error_level = attrs["error_level"]
        for k in _PLAIN_ATTRS:
            setattr(self, k, attrs[k])
        return self

    # ------------------------------------------------------------------ prediction
    def _forward(self, X, post=None) -> np.ndarray:
        """``post`` of the logits of X, as a numpy array."""
        try:
            trunk, head = self._serve
        except AttributeError:
            check_is_fitted(self)
            raise
        if self._is_plain(X):
            # The hot path of predict: X needs no more than a cast and a finite check.
            Xc = np.ascontiguousarray(X, dtype=self._np_dtype)
            if math.isfinite(Xc.sum()) and Xc.flags.writeable:
                out = net.forward(trunk, head, torch.from_numpy(Xc), post, self._gpu)
                return out.cpu().numpy()
        return self._forward_checked(self._check_X(X), post)

    def _forward_checked(self, X, post=None) -> np.ndarray:
        """``_forward`` for X already checked and cast (a sparse one a batch at a time)."""
        trunk, head = self._serve
        if not sp.issparse(X):
            return net.forward(trunk, head, self._tensor(X), post, self._gpu).cpu().numpy()
        rows = self._batch_size(X.shape[0])
        parts = [
            net.forward(trunk, head, self._tensor(X[s : s + rows].toarray()), post, self._gpu)
            for s in range(0, X.shape[0], rows)
        ]
        return torch.cat(parts).cpu().numpy()

    def _tensor(self, X):
        """X as a host tensor; ``net.forward`` copies it to the device a slice at a time."""
        return net.to_tensor(X, self._torch_dtype)

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        idx = self._forward(X, _argmax)
        return self.classes_[idx]

    def predict_proba(self, X):
        """Class probabilities, the softmax of the logits.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``, in the network's ``dtype``;
            rows sum to one.
        """
        return self._forward(X, _softmax)

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities in the order of ``classes_``.
        """
        return self._forward(X, _log_softmax)

    def decision_function(self, X):
        """Logits of the head.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the logit of ``classes_[1]`` minus that of ``classes_[0]``;
            otherwise one logit per class.
        """
        return self._forward(X, _decision)

    # ------------------------------------------------------------------ skorch
    def to_skorch(self, **kwargs):
        """A skorch ``NeuralNetClassifier`` carrying a copy of the weights that predict.

        The skorch net computes ``head(trunk(X))`` with cross-entropy loss and the
        weights this estimator predicts with (the fused ones when ``fusion`` is set), so
        its ``predict_proba`` equals this estimator's. Like every skorch net it expects
        ``X`` in the network's dtype (float32 by default) and its ``predict`` returns
        indices into ``classes_``.

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
        >>> clf = OnlineFineTuneClassifier(max_iter=5, random_state=0).fit(X, y)
        >>> skorch_net = clf.to_skorch()
        >>> bool(np.allclose(skorch_net.predict_proba(X), clf.predict_proba(X), atol=1e-6))
        True
        """
        from skorch import NeuralNetClassifier

        check_is_fitted(self)
        module = net.TrunkHeadNet(*copy.deepcopy(self._serve))
        params = dict(
            criterion=nn.CrossEntropyLoss,
            optimizer=net.OPTIMIZERS[self.optimizer],
            lr=self.lr,
            batch_size=self._batch_size(200),
            train_split=None,
            classes=self.classes_,
            device=str(self.device_),
        )
        params.update(kwargs)
        skorch_net = NeuralNetClassifier(module, **params)
        return skorch_net.initialize()


def _make_detector(spec):
    """A fresh drift detector for a (re)start; ``"auto"`` is river's ADWIN when river
    is installed and no detector otherwise."""
    if spec is None:
        return None
    if isinstance(spec, str):  # "auto"
        try:
            from river.drift import ADWIN
        except ImportError:
            warnings.warn(
                "drift_detector='auto' uses river's ADWIN, but river is not installed: "
                "no drift detection, so the replay memory will not follow drift. "
                "pip install 'skocl[drift]', or set drift_detector=None to silence this.",
                DriftDetectionUnavailableWarning,
                stacklevel=4,
            )
            return None
        return ADWIN()
    return spec.clone() if hasattr(spec, "clone") else copy.deepcopy(spec)


def _argmax(z):
    return z.argmax(1)


def _softmax(z):
    return torch.softmax(z, dim=1)


def _log_softmax(z):
    return torch.log_softmax(z, dim=1)


def _decision(z):
    return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z


def _encode(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of ``y``'s labels in the sorted ``classes``; an error names labels that
    are not there."""
    try:
        idx = np.searchsorted(classes, y)
        found = idx < len(classes)
        found[found] = classes[idx[found]] == y[found]
    except TypeError:  # labels that do not compare with the classes' type
        found = np.zeros(len(y), dtype=bool)
        idx = None
    if not found.all():
        unknown = sorted({repr(v) for v in np.asarray(y)[~found].tolist()})
        raise ValueError(
            f"y contains label(s) {', '.join(unknown[:10])} not in classes_ {classes.tolist()}."
        )
    return idx
