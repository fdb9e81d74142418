"""OnlineFineTuneClassifier: the sklearn-facing estimator.

It validates input, encodes labels and keeps fitted state; the torch side (networks,
the update rule, its components) lives in ``_learner.py``.
"""

from __future__ import annotations

import operator
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import (
    check_consistent_length,
    column_or_1d,
    validate_data,
)

from ._drift import make_detector
from ._head_rates import check_head_rates
from ._learner import OnlineLearner
from ._learner_checkpoint import all_or_nothing
from ._modules import (
    ACTIVATIONS,
    AUTO_TRUNK_LR,
    DTYPES,
    OPTIMIZERS,
    make_module,
    resolve_device,
    takes_sparse,
)
from ._multi_output import TasksMixin
from ._random import draw_seed
from ._rows import Rows, make_rows
from ._serving import ServingMixin
from ._settings import Settings
from ._state import export_state, import_state
from ._tasks import Tasks
from ._validation import (
    FLOATS,
    cast,
    check_label_types,
    check_weights,
    encode,
    encode_or_grow,
    encode_tasks,
    is_multi_output,
    split_validation,
    start_classes,
    start_task_classes,
    task_columns,
)
from ._views import LearnerViewsMixin
from .exceptions import NonFiniteStepWarning

_RESET_BY_VALIDATE = ("n_features_in_", "feature_names_in_")


# The parameters that Settings holds.
_SETTINGS = tuple(Settings.__dataclass_fields__)


class OnlineFineTuneClassifier(
    TasksMixin, LearnerViewsMixin, ClassifierMixin, ServingMixin, BaseEstimator
):
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
        A module with a true ``accepts_sparse`` attribute gets sparse input as
        :class:`skocl.sparse.SparseRows` batches (see :mod:`skocl.sparse`).
    module_kwargs : dict, default=None
        Keyword arguments for ``module`` when it is a class.
    trunk_attr : str, default="trunk"
        Attribute of the module holding the shared trunk.
    head_attr : str, default="head"
        Attribute of the module holding the task head.
    classes : array-like, default=None
        The full label set, fixed: labels outside it are an error. If None, ``fit``
        takes the labels of ``y`` and the label set grows when ``partial_fit`` meets
        new labels (unless its ``classes`` argument fixes it). For ``y`` with a column
        per task, a list of label arrays, one per task.
    hidden_layer_sizes : tuple of int or "auto", default="auto"
        Widths of the default trunk's hidden layers. ``"auto"``: ``(256,)`` for dense
        input, ``(32,)`` for sparse input (see the user guide's "Text streams").
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
    max_iter : int, default=500
        Maximum number of epochs of ``fit``. 500, not scikit-learn's 200: with fewer
        rows an epoch is fewer steps, and the README quickstart (500 rows, 3 steps an
        epoch) needs 238 epochs to meet ``tol`` (it warns at 200, with the same
        accuracy); on larger sets ``tol`` stops ``fit`` far earlier.
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
    trunk_lr : float or "auto", default="auto"
        Learning rate of the trunk update in ``partial_fit``. ``0`` freezes the trunk.
        ``"auto"``: ``1e-3``, and ``5e-2`` for a sparse first layer, whose rows move
        only in the batches that hold their column (chosen by a sweep over four sparse
        streams; see the user guide's "Text streams").
    trunk_epochs : int, default=1
        Passes over each chunk in the trunk update.
    head_lr : float, default=1e-2
        Learning rate of the head fine-tune in ``partial_fit``.
    head_steps : int, default=3
        Full-batch gradient steps of the head fine-tune, on the chunk (a uniform sample
        of 256 of its rows a class, 1,024 to 2,048, when it has more) and as many
        replayed rows. ``0`` skips it.
    head_rates : tuple of float and "lda", default=(1.0, 0.1, 0.01, "lda")
        Multiples of ``head_lr`` at which copies of the head are fine-tuned side by
        side, and ``"lda"``: a head in closed form beside them, streaming linear
        discriminant analysis of the trunk's features (Deep SLDA) over every row seen
        since ``fit``; the candidate with the lowest recent prequential error predicts
        (``head_lr_``). ``(1.0,)`` fine-tunes the head at ``head_lr`` alone. Only a
        trained head has candidates, or a head learning from scratch after its first
        concept change or drift with new classes (then one copy, at ``head_lr``, and
        the closed-form one); with ``fusion`` the closed-form one does not serve. See
        the user guide's "Choosing the head's rate".
    memory_size : int, default=2000
        Rows kept in the replay memory, replayed in every ``partial_fit`` against
        forgetting; ``fit`` fills it with a sample of its training rows. ``0`` turns
        replay off.
    memory_strategy : {"class_balanced", "reservoir"}, default="class_balanced"
        Which rows the memory keeps: an equal share per class seen, each a uniform
        sample of that class, or a uniform sample of every row seen. Rows of several
        tasks, each with several labels, are always kept by reservoir.
    logit_replay : float, default=0.1
        Weight :math:`\alpha` of dark experience replay (DER++; Buzzega et al., NeurIPS
        2020) in the trunk's update: a row that ``partial_fit`` keeps in the memory is
        kept with the network's logits for it, and the mean squared gap between a
        replayed row's logits and its kept ones, times ``logit_replay``, joins the
        replayed rows' cross-entropy. It keeps what the network did on old rows, not
        only their labels (Permuted-Digits 0.943 to 0.959, 10 seeds; the user guide's
        "Continual learning", "Dark experience replay"). Rows ``fit`` keeps carry no
        logits, nor rows kept before a class became predictable, once it is; nor a
        sparse memory or several tasks'. ``0`` replays labels alone.
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
    fresh_head : bool, default=True
        On a drift that changes the concept, learn a head from zero beside the head; it
        replaces the head once its recent prequential error is lower by a margin
        (``fresh_heads_``). One task, a plain ``nn.Linear`` head, Adam or AdamW. See
        the user guide's "Drift".
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
    classes_ : ndarray of shape (n_classes,), or list of such arrays
        Class labels; of several tasks, one array per task (``n_outputs_`` of them).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``, when ``X`` has string column names.
    module_ : torch.nn.Module
        The network being trained (with ``fusion``, predictions come from
        ``served_module_``).
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
    head_lr_ : float
        The rate of the head copy that predicts: ``head_lr`` times the entry of
        ``head_rates`` with the lowest recent prequential error; ``nan`` while the
        closed-form head (``"lda"``) predicts; ``head_lr`` while the head is fine-tuned
        at one rate (a head still learning, or several tasks).
    fresh_heads_ : int
        Times a fresh head replaced the head after a drift (``fresh_head``).
    drift_detector_ : object or None
        The detector in use (a clone of ``drift_detector``); of several tasks, a list.
    drifts_ : list of int
        Values of ``n_samples_seen_`` at which drifts were detected; of several tasks,
        a list per task.
    served_module_ : TrunkHeadNet
        The weights that predict: ``module_``'s trunk and head, or with ``fusion`` the
        fused copy of them.
    learner_ : OnlineLearner
        The torch-side state: trunk, head, optimizers, random stream and the continual
        components (``memory``, ``anchor``, ``fusion``, ``drift``); see the contributor
        guide.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : numpy MLP with ``partial_fit``.
    sklearn.linear_model.SGDClassifier : linear models with ``partial_fit``.
    skorch.NeuralNetClassifier : general-purpose sklearn wrapper for torch modules.

    Notes
    -----
    Write :math:`f_\theta` for the trunk, :math:`g_\phi` for the head and
    :math:`L(\theta, \phi; B) = \sum_{i \in B} w_i\, \ell_{\mathrm{CE}}(g_\phi(f_\theta(x_i)),
    y_i) / \sum_{i \in B} w_i` for the weighted cross-entropy of a mini-batch :math:`B`.
    ``fit`` minimises :math:`L` over :math:`(\theta, \phi)` at rate ``lr``.
    ``partial_fit`` on a chunk :math:`C` runs one rule (``learner_.update``), in order:

    0. drift: :math:`C` is predicted before it is learned and the errors feed the
       detector; on a detection while the chunk's error rate is above its recent level,
       the replay rows of the chunk's classes are dropped when the chunk's inputs look
       like the memory's or contradict its labels (the concept changed; new classes or
       domains keep them), and the EMA fusion restarts; with ``fresh_head``, a concept
       change also starts a fresh head, learned beside :math:`\phi` in step 2 and
       scored on each chunk before it is learned, which replaces :math:`\phi` once its
       recent error is lower by a margin;
    1. trunk update: for each mini-batch :math:`B \subseteq C` (``trunk_epochs``
       shuffled passes), :math:`\theta \leftarrow \mathrm{opt}_\theta(\theta,
       \nabla_\theta L(\theta, \phi; B) + \lambda F \odot (\theta - \theta^*))` at rate
       ``trunk_lr``, :math:`\phi` fixed (the pull toward the anchor :math:`\theta^*` only
       with ``regularization``: :math:`F = 1` for L2-SP, the empirical Fisher for EWC);
    2. head fine-tune: the trunk frozen, :math:`z_i = f_\theta(x_i)` computed once (for
       at most 256 rows of :math:`C` a class, within 1,024 to 2,048, a uniform sample
       of a larger chunk), then
       ``head_steps`` full-batch steps :math:`\phi \leftarrow \mathrm{opt}_\phi(\phi,
       \nabla_\phi L)` on the :math:`z_i` at rate ``head_lr``; a trained head takes
       them at each rate of ``head_rates`` side by side, a closed-form head
       (``"lda"``, linear discriminant analysis of every :math:`z_i` of the chunks
       since ``fit`` and of the replay memory at the start) is updated beside them, and
       the candidate with the lowest error on the chunks since predicts (``head_lr_``);
    3. the chunk is offered to the replay memory :math:`M`, whose rows join both steps:
       :math:`\min(|B|, |M|)` replayed rows per mini-batch, :math:`\min(|C|, |M|)` in the
       head fine-tune, together weighing as much as the chunk;
    4. fusion sets the served weights: :math:`\bar w \leftarrow m \bar w + (1 - m) w`
       (EMA) or :math:`(1-\alpha) w^* + \alpha w` (WiSE-FT).

    The anchor :math:`(\theta^*, \phi^*)` is the weights at the end of ``fit``, those of
    a user's module when there was no ``fit``, and otherwise those after the first
    ``partial_fit``. Both optimizers keep their state across calls. Steps 1-2 are a
    transaction: a step whose loss or gradients are not finite is skipped
    (:class:`~skocl.exceptions.NonFiniteStepWarning`, ``n_skipped_steps_``), and an update
    that still leaves a weight that is not finite is undone. The user guide on continual
    learning gives the references.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skocl import OnlineFineTuneClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> clf = OnlineFineTuneClassifier(random_state=0).fit(X[:1000], y[:1000])
    >>> for start in range(1000, 1700, 100):
    ...     clf = clf.partial_fit(X[start:start + 100], y[start:start + 100])
    >>> clf.n_samples_seen_
    1700
    >>> bool(clf.score(X[1700:], y[1700:]) > 0.9)
    True
    >>> clf.head_lr_  # the fitted head kept its slowest rate: head_lr * 0.01
    0.0001

    A model fitted on fewer rows: the streamed rows teach the head in closed form
    (``"lda"`` in ``head_rates``), which serves once it predicts the chunks best.

    >>> small = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    >>> for start in range(500, 1500, 100):
    ...     small = small.partial_fit(X[start:start + 100], y[start:start + 100])
    >>> small.head_lr_  # no rate: the closed-form head predicts
    nan
    >>> bool(small.score(X[1500:], y[1500:]) > 0.91)
    True

    Labels that all move (a new concept): a fresh head learns it and takes over.

    >>> for start in range(0, 300, 100):
    ...     clf = clf.partial_fit(X[start:start + 100], (y[start:start + 100] + 1) % 10)
    >>> clf.fresh_heads_, bool(clf.score(X[1700:], (y[1700:] + 1) % 10) > 0.85)
    (1, True)

    From scratch the head has no candidates (``head_lr`` alone) until its first
    concept change; then the closed-form head starts, and serves once it leads.

    >>> import numpy as np
    >>> scratch = OnlineFineTuneClassifier(random_state=0)
    >>> for start in range(0, 1000, 100):
    ...     part = slice(start, start + 100)
    ...     scratch = scratch.partial_fit(X[part], y[part], np.arange(10))
    >>> scratch.head_lr_
    0.01
    >>> for start in range(1000, 1700, 100):
    ...     scratch = scratch.partial_fit(X[start:start + 100], (y[start:start + 100] + 1) % 10)
    >>> scratch.head_lr_, bool(scratch.score(X[1700:], (y[1700:] + 1) % 10) > 0.9)
    (nan, True)

    Several tasks over one trunk, a head each (NaN: a missing label):

    >>> Y = np.column_stack([y, y % 2]).astype(float)
    >>> Y[::2, 0] = np.nan
    >>> multi = OnlineFineTuneClassifier(random_state=0).fit(X[:1000], Y[:1000])
    >>> multi.predict(X[1700:1702]).shape, [len(c) for c in multi.classes_]
    ((2, 2), [10, 2])
    """

    _parameter_constraints: dict = {
        "module": "no_validation",  # checked in make_module, which names the type
        "module_kwargs": [None, dict],
        "trunk_attr": [str],
        "head_attr": [str],
        "classes": ["array-like", None],
        "hidden_layer_sizes": [StrOptions({"auto"}), "array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "trunk_lr": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "trunk_epochs": [Interval(Integral, 0, None, closed="left")],
        "head_lr": [Interval(Real, 0, None, closed="left")],
        "head_steps": [Interval(Integral, 0, None, closed="left")],
        "head_rates": [tuple, list],
        "memory_size": [Interval(Integral, 0, None, closed="left")],
        "memory_strategy": [StrOptions({"reservoir", "class_balanced"})],
        "logit_replay": [Interval(Real, 0, None, closed="left")],
        "regularization": [StrOptions({"l2sp", "ewc"}), None],
        "reg_strength": [Interval(Real, 0, None, closed="left")],
        "fusion": [StrOptions({"ema", "wise"}), None],
        "ema_decay": [Interval(Real, 0, 1, closed="left")],
        "wise_alpha": [Interval(Real, 0, 1, closed="both")],
        "drift_detector": [StrOptions({"auto"}), HasMethods(["update"]), None],
        "fresh_head": ["boolean"],
        "dtype": [StrOptions(set(DTYPES))],
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
        hidden_layer_sizes="auto",
        activation="relu",
        dropout=0.0,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size="auto",
        max_iter=500,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        trunk_lr="auto",
        trunk_epochs=1,
        head_lr=1e-2,
        head_steps=3,
        head_rates=(1.0, 0.1, 0.01, "lda"),
        memory_size=2000,
        memory_strategy="class_balanced",
        logit_replay=0.1,
        regularization=None,
        reg_strength=1.0,
        fusion=None,
        ema_decay=0.9,
        wise_alpha=0.5,
        drift_detector="auto",
        fresh_head=True,
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
        self.head_rates = head_rates
        self.memory_size = memory_size
        self.memory_strategy = memory_strategy
        self.logit_replay = logit_replay
        self.regularization = regularization
        self.reg_strength = reg_strength
        self.fusion = fusion
        self.ema_decay = ema_decay
        self.wise_alpha = wise_alpha
        self.drift_detector = drift_detector
        self.fresh_head = fresh_head
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted once the model holds a learner (``fit``, ``partial_fit`` or
        ``skocl.load``), what ``check_is_fitted`` and scikit-learn's wrapper of every
        ``partial_fit`` ask; without it they scan the attributes' names."""
        return "learner_" in vars(self)

    @classmethod
    def _get_param_names(cls):
        """scikit-learn's parameter names (read from ``__init__``'s signature), kept
        per class: reading them cost 57 µs, on every ``get_params`` and every check."""
        if "_param_names" not in cls.__dict__:
            cls._param_names = list(super()._get_param_names())
        return list(cls._param_names)

    def _validate_params(self):
        """scikit-learn's check of the parameters (150 µs), skipped when every parameter
        is the object last checked (the constraints check each object's type and range,
        which stay as they were): cheap enough for every ``partial_fit``, where
        scikit-learn checks only the first call and a parameter set between calls
        would otherwise go unchecked (a negative ``head_lr`` would climb the loss)."""
        values = [getattr(self, name) for name in self._get_param_names()]
        last = self.__dict__.get("_checked_params")
        if last is not None and len(last) == len(values) and all(map(operator.is_, values, last)):
            return
        super()._validate_params()
        self._checked_params = values

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Pretrain every parameter of the network on ``(X, y)``.

        Earlier calls to ``fit`` and ``partial_fit`` are forgotten. Training starts
        from the user's ``module`` when one is given, from a fresh MLP otherwise.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. A sparse matrix stays sparse with the default network (its
            first layer reads the non-zeros) and with a module whose
            ``accepts_sparse`` is true; other modules get it densified one mini-batch
            at a time.
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            Labels of any type (ints, strings, booleans). With several columns, each is
            a task with its own head over the shared trunk; a missing label (NaN, None)
            teaches its task nothing (see the user guide, "Several tasks").
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples in the loss.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        with all_or_nothing(self, keep_learner=False):
            X, y_idx, sw, learner = self._restart(X, y, sample_weight, None, False)
            Xt, yt, swt, val = X, y_idx, sw, None
            if self.early_stopping:
                Xt, X_val, yt, y_val, swt = split_validation(
                    X, y_idx, sw, self.validation_fraction, draw_seed(self.random_state, bits=31)
                )
                val = (X_val, y_val)
            report = learner.pretrain(self._rows(Xt, yt, swt), val)
            learner.finish_pretraining(self._rows(X, y_idx, None))
            self.n_iter_, self.loss_curve_ = report.n_iter, report.loss_curve
            self.validation_scores_ = report.validation_scores
            self.best_validation_score_ = report.best_validation_score
            self.n_samples_seen_ = X.shape[0]
            self._count_skipped(report.skipped)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Learn from one chunk: update the trunk, then fine-tune the head.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The chunk; sparse as in :meth:`fit`.
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            Its labels, as in :meth:`fit`; a column past the model's tasks adds one.
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
        self._validate_params()  # scikit-learn's wrapper checks only the first call
        first = not hasattr(self, "learner_")
        if not first:  # checked before anything changes
            X, y_idx, sw, grown = self._validate_chunk(X, y, classes, sample_weight)
        with all_or_nothing(self, X) as checkpoint:
            if first:
                X, y_idx, sw, learner = self._restart(X, y, sample_weight, classes, True)
                self.n_iter_, self.loss_curve_, self.n_samples_seen_ = 0, [], 0
            else:
                learner = self.learner_
                learner.configure(self._settings())
                if learner.tasks is not None:
                    y_idx = self._grow_tasks(y_idx, grown)
                elif grown is not None:
                    learner.grow(np.searchsorted(grown, self.classes_), len(grown))
                    self.classes_ = grown
            loss, skipped = learner.update(
                self._rows(X, y_idx, sw),
                seen=self.n_samples_seen_,
                watch=not first,
                saved=None if checkpoint is None else checkpoint.saved,
            )
            self.n_iter_ += 1
            self.loss_curve_.append(loss)
            self.n_samples_seen_ += X.shape[0]
            self._count_skipped(skipped)
        return self

    def _settings(self) -> Settings:
        """The parameters that act on every call, read here and nowhere else
        (``"auto"`` resolved for the network's input: dense or sparse). The last one
        built is returned again while every parameter is the object it was built from
        and the input kind is the same (most calls: ``set_params`` between calls makes
        a new one)."""
        values = [getattr(self, name) for name in _SETTINGS]
        sparse = self.learner_.sparse
        last = self.__dict__.get("_settings_from")
        if last is not None and last[0] == sparse and all(map(operator.is_, values, last[1])):
            return last[2]
        named = dict(zip(_SETTINGS, values))
        if named["trunk_lr"] == "auto":
            named["trunk_lr"] = AUTO_TRUNK_LR["sparse" if sparse else "dense"]
        named["head_rates"] = check_head_rates(named["head_rates"])
        settings = Settings(**named)
        self._settings_from = (sparse, values, settings)
        return settings

    def _rows(self, X, y_idx, sw) -> Rows:
        learner = self.learner_
        return make_rows(X, y_idx, sw, learner.dtype, self.device_, learner.sparse)

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

    # ------------------------------------------------------------------ validation
    def _restart(self, X, y, sample_weight, classes, first_partial_fit):
        """Validate a call that (re)starts the model and build its learner (the caller
        puts everything back if it fails)."""
        if is_multi_output(y):
            X = validate_data(self, X, accept_sparse="csr", dtype=FLOATS, reset=True)
            columns = task_columns(y, X.shape[0])
            X = cast(X, self.dtype)
            sw = check_weights(sample_weight, X, self.dtype)
            classes, fixed = start_task_classes(self.classes, classes, columns, first_partial_fit)
            local, _ = encode_tasks(classes, columns, [fixed] * len(columns))
            n_classes = [len(c) for c in classes]
            fixed = [fixed] * len(classes)
        else:
            check_label_types(y)
            X, y = validate_data(self, X, y, accept_sparse="csr", dtype=FLOATS, reset=True)
            check_classification_targets(y)
            X = cast(X, self.dtype)
            sw = check_weights(sample_weight, X, self.dtype)
            classes, fixed = start_classes(
                self.classes, self.module, classes, y, first_partial_fit
            )
            y_idx, n_classes = encode(classes, y), len(classes)
        seed = draw_seed(self.random_state)
        device = resolve_device(self.device)
        module, trunk, head = make_module(self.get_params(deep=False), n_classes, X, seed, device)
        if isinstance(n_classes, list):
            y_idx = Tasks(n_classes).to_global(local)
        sparse = sp.issparse(X) and takes_sparse(module)
        self._start(classes, fixed, module, trunk, head, seed, device, sparse)
        return X, y_idx, sw, self.learner_

    def _validate_chunk(self, X, y, classes, sample_weight):
        """Validate a chunk for a fitted model; raises before anything changes."""
        if self.learner_.tasks is not None:
            return self._validate_task_chunk(X, y, classes, sample_weight)
        if is_multi_output(y):
            raise ValueError(
                f"y has shape {np.shape(y)}: several tasks, but this model learns one "
                "(it was fitted on y of shape (n_samples,)). Tasks are added to a model "
                "fitted on several from the start (y of shape (n_samples, n_tasks))."
            )
        if classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                f"was: {self.classes_!r}"
            )
        X = self._check_X(X)
        check_label_types(y)
        if type(y) is not np.ndarray or y.ndim != 1:
            y = column_or_1d(y, warn=True)
        if y.shape[0] != X.shape[0]:
            check_consistent_length(X, y)
        y_idx, grown = encode_or_grow(self.classes_, y, self._fixed_classes, self.learner_.head)
        sw = check_weights(sample_weight, X, self._dtype)
        return X, y_idx, sw, grown

    def _start(self, classes, fixed, module, trunk, head, seed, device, sparse=False):
        """Forget everything and hold the new network (``sparse``: it reads sparse
        rows)."""
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            if key not in _RESET_BY_VALIDATE:
                delattr(self, key)
        self.classes_ = classes
        self._fixed_classes = fixed
        self.module_ = module
        self.device_ = device
        self._dtype = self.dtype
        self._np_dtype = np.dtype(self.dtype)
        self._no_names = not hasattr(self, "feature_names_in_")
        self.learner_ = OnlineLearner(
            module,
            trunk,
            head,
            n_features=self.n_features_in_,
            dtype=DTYPES[self.dtype],
            device=device,
            seed=seed,
            detector=make_detector(self.drift_detector),
            user_module=self.module is not None,
            n_classes=sum(map(len, classes)) if isinstance(classes, list) else len(classes),
            sparse=sparse,
        )
        self.learner_.configure(self._settings())
        self.n_skipped_steps_ = 0
        self.validation_scores_ = None
        self.best_validation_score_ = None

    # ------------------------------------------------------------------ persistence
    def _export_state(self) -> tuple[dict, dict]:
        """Fitted state as JSON-able values and a dict of tensors (see skocl.save)."""
        return export_state(self)

    def _import_state(self, attrs: dict, tensors: dict) -> OnlineFineTuneClassifier:
        """Rebuild the fitted state written by ``_export_state`` (same parameters)."""
        return import_state(self, attrs, tensors)
