"""StreamPipeline: partial_fit through the steps, routing, atomicity, Pipeline behaviour."""

import io
import pickle
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest
import sklearn
from _util import assert_same_state, state
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    Normalizer,
    StandardScaler,
)
from sklearn.svm import SVC

from skocl import OnlineFineTuneClassifier
from skocl.exceptions import FrozenStepWarning
from skocl.pipeline import StreamPipeline, make_stream_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CLASSES = np.arange(10)
CHUNK = 32


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:480], y[:480]


def make_clf(**kw):
    return OnlineFineTuneClassifier(
        **{"random_state": 0, "max_iter": 20, "hidden_layer_sizes": (32,), **kw}
    )


def chunks(X, y, size=CHUNK):
    for start in range(0, len(X), size):
        yield X[start : start + size], y[start : start + size]


def fitted_attrs(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


def assert_same_fitted_attrs(a, b):
    fa, fb = fitted_attrs(a), fitted_attrs(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


def by_hand(transformer, clf, X, y, **first_kw):
    """partial_fit, transform, partial_fit over the chunks, without a pipeline."""
    for i, (Xc, yc) in enumerate(chunks(X, y)):
        if transformer is not None:
            transformer.partial_fit(Xc)
            Xc = transformer.transform(Xc)
        clf.partial_fit(Xc, yc, **(first_kw if i == 0 else {}))
    return transformer, clf


def streamed(pipe, X, y, **first_kw):
    for i, (Xc, yc) in enumerate(chunks(X, y)):
        assert pipe.partial_fit(Xc, yc, **(first_kw if i == 0 else {})) is pipe
    return pipe


# ----------------------------------------------------------------- partial_fit = by hand
@pytest.mark.parametrize(
    "transformer",
    [StandardScaler(), MinMaxScaler(), MaxAbsScaler(), IncrementalPCA(n_components=5)],
    ids=lambda t: type(t).__name__,
)
def test_partial_fit_equals_doing_it_by_hand(digits, transformer):
    X, y = digits
    pipe = streamed(
        StreamPipeline([("t", clone(transformer)), ("clf", make_clf())]), X, y, classes=CLASSES
    )
    t, clf = by_hand(clone(transformer), make_clf(), X, y, classes=CLASSES)

    assert_same_fitted_attrs(pipe.named_steps["t"], t)
    assert_same_state(state(pipe.named_steps["clf"]), state(clf))
    assert pipe.named_steps["clf"].n_samples_seen_ == len(X)
    np.testing.assert_array_equal(pipe.predict_proba(X), clf.predict_proba(t.transform(X)))


def test_standard_scaler_running_statistics_are_those_of_the_whole_stream(digits):
    X, y = digits
    pipe = streamed(make_stream_pipeline(StandardScaler(), make_clf()), X, y, classes=CLASSES)
    scaler = pipe.named_steps["standardscaler"]
    assert scaler.n_samples_seen_ == len(X)
    np.testing.assert_allclose(scaler.mean_, X.mean(axis=0))
    np.testing.assert_allclose(scaler.var_, X.var(axis=0), atol=1e-9)


def test_partial_fit_continues_from_fit(digits):
    X, y = digits
    pipe = make_stream_pipeline(StandardScaler(), make_clf()).fit(X[:160], y[:160])
    streamed(pipe, X[160:], y[160:])

    scaler = StandardScaler().fit(X[:160])
    clf = make_clf().fit(scaler.transform(X[:160]), y[:160])
    by_hand(scaler, clf, X[160:], y[160:])

    assert pipe.named_steps["standardscaler"].n_samples_seen_ == len(X)
    assert_same_fitted_attrs(pipe.named_steps["standardscaler"], scaler)
    assert_same_state(state(pipe.named_steps["onlinefinetuneclassifier"]), state(clf))


def test_passthrough_and_none_steps_are_skipped(digits):
    X, y = digits
    pipe = StreamPipeline(
        [("a", "passthrough"), ("scale", StandardScaler()), ("b", None), ("clf", make_clf())]
    )
    streamed(pipe, X, y, classes=CLASSES)
    scaler, clf = by_hand(StandardScaler(), make_clf(), X, y, classes=CLASSES)
    assert_same_fitted_attrs(pipe.named_steps["scale"], scaler)
    assert_same_state(state(pipe.named_steps["clf"]), state(clf))


def test_passthrough_final_step_updates_the_transformers(digits):
    X, y = digits
    pipe = StreamPipeline([("scale", StandardScaler()), ("out", "passthrough")])
    assert hasattr(pipe, "partial_fit")
    streamed(pipe, X, y)
    assert pipe.named_steps["scale"].n_samples_seen_ == len(X)
    np.testing.assert_allclose(pipe.transform(X).mean(axis=0), 0, atol=1e-9)


# ------------------------------------------------------------------ step kinds
def make_text(n, seed):
    rng = np.random.default_rng(seed)
    topics = {
        "sport": "goal match team score player coach league referee stadium win".split(),
        "food": "recipe oven flour sugar bake salt pepper soup dinner taste".split(),
    }
    filler = "the a today we our this really very new big".split()
    labels = rng.choice(sorted(topics), size=n)
    docs = [" ".join([*rng.choice(topics[label], 3), *rng.choice(filler, 3)]) for label in labels]
    return docs, labels


def test_hashing_vectorizer_pipeline_learns_short_texts():
    docs, labels = make_text(300, seed=0)
    test_docs, test_labels = make_text(100, seed=1)
    pipe = make_stream_pipeline(
        HashingVectorizer(n_features=2**10),
        make_clf(trunk_lr=1e-2, head_lr=5e-2),
    )
    for start in range(0, len(docs), CHUNK):
        pipe.partial_fit(
            docs[start : start + CHUNK],
            labels[start : start + CHUNK],
            classes=["food", "sport"],
        )
    assert pipe.named_steps["onlinefinetuneclassifier"].n_features_in_ == 2**10
    assert pipe.score(test_docs, test_labels) > 0.9  # chance is about 0.5


@pytest.mark.parametrize(
    "stateless", [FunctionTransformer(), FunctionTransformer(np.log1p), Normalizer()], ids=str
)
def test_stateless_step_only_transforms(digits, stateless):
    X, y = digits
    pipe = streamed(
        StreamPipeline([("f", clone(stateless)), ("clf", make_clf())]), X, y, classes=CLASSES
    )
    f = clone(stateless)
    clf = make_clf()
    for i, (Xc, yc) in enumerate(chunks(X, y)):
        clf.partial_fit(f.transform(Xc), yc, **({"classes": CLASSES} if i == 0 else {}))
    assert fitted_attrs(pipe.named_steps["f"]) == {}  # never fitted
    assert_same_state(state(pipe.named_steps["clf"]), state(clf))


def test_prefitted_step_without_partial_fit_is_used_frozen(digits):
    X, y = digits
    pca = PCA(n_components=8, random_state=0).fit(X[:100])
    components = pca.components_.copy()
    mean = pca.mean_.copy()
    with pytest.warns(
        FrozenStepWarning, match=r"'pca' \(PCA\) has no partial_fit.*IncrementalPCA"
    ):
        pipe = streamed(StreamPipeline([("pca", pca), ("clf", make_clf())]), X, y, classes=CLASSES)

    assert pipe.named_steps["pca"] is pca
    np.testing.assert_array_equal(pca.components_, components)
    np.testing.assert_array_equal(pca.mean_, mean)
    clf = make_clf()
    for i, (Xc, yc) in enumerate(chunks(X, y)):
        clf.partial_fit(pca.transform(Xc), yc, **({"classes": CLASSES} if i == 0 else {}))
    assert_same_state(state(pipe.named_steps["clf"]), state(clf))


def test_unfitted_step_without_partial_fit_raises_naming_it_and_changes_nothing(digits):
    X, y = digits
    pipe = StreamPipeline(
        [("scale", StandardScaler()), ("reduce", PCA(n_components=5)), ("clf", make_clf())]
    )
    with pytest.raises(NotFittedError, match=r"'reduce' \(PCA\).*fit.*IncrementalPCA"):
        pipe.partial_fit(X[:CHUNK], y[:CHUNK], classes=CLASSES)
    assert fitted_attrs(pipe.named_steps["scale"]) == {}
    assert fitted_attrs(pipe.named_steps["clf"]) == {}

    # After fit, the PCA is fitted and is used frozen.
    pipe.fit(X[:200], y[:200])
    components = pipe.named_steps["reduce"].components_.copy()
    with pytest.warns(FrozenStepWarning, match="'reduce'"):
        pipe.partial_fit(X[200:232], y[200:232])
    np.testing.assert_array_equal(pipe.named_steps["reduce"].components_, components)
    assert pipe.named_steps["scale"].n_samples_seen_ == 232


# ---------------------------------------------------------------- availability
def test_partial_fit_exists_only_when_the_final_estimator_has_it():
    assert not hasattr(make_stream_pipeline(StandardScaler(), SVC()), "partial_fit")
    assert not hasattr(StreamPipeline([("svc", SVC())]), "partial_fit")
    assert hasattr(make_stream_pipeline(StandardScaler(), SGDClassifier()), "partial_fit")
    assert hasattr(make_stream_pipeline(StandardScaler(), make_clf()), "partial_fit")
    # The rest of Pipeline is unchanged: SVC pipelines still fit and predict.
    X, y = load_digits(return_X_y=True)
    pipe = make_stream_pipeline(StandardScaler(), SVC()).fit(X[:200], y[:200])
    assert pipe.score(X[200:400], y[200:400]) > 0.8


def test_pipeline_has_no_partial_fit_request_method():
    # partial_fit(X, y=None, **params) declares no metadata of its own, so the
    # pipeline stays a pure router.
    assert not hasattr(StreamPipeline, "set_partial_fit_request")


# ------------------------------------------------------------------ atomicity
def test_failed_partial_fit_leaves_every_step_bit_identical(digits):
    X, y = digits
    pipe = streamed(make_stream_pipeline(StandardScaler(), make_clf()), X[:160], y[:160],
                    classes=CLASSES)  # fmt: skip
    scaler = pipe.named_steps["standardscaler"]
    clf = pipe.named_steps["onlinefinetuneclassifier"]
    before = {k: np.copy(v) for k, v in fitted_attrs(scaler).items()}
    clf_before = state(clf)
    n_seen = clf.n_samples_seen_

    bad_y = y[160:192].copy()
    bad_y[3] = 99
    with pytest.raises(ValueError, match="99"):
        pipe.partial_fit(X[160:192], bad_y)

    for k in ("mean_", "var_", "scale_", "n_samples_seen_"):
        np.testing.assert_array_equal(getattr(scaler, k), before[k], err_msg=k)
    assert fitted_attrs(scaler).keys() == before.keys()
    assert_same_state(state(clf), clf_before)
    assert clf.n_samples_seen_ == n_seen


def test_failed_call_is_as_if_it_never_happened(digits):
    X, y = digits
    a = make_stream_pipeline(StandardScaler(), make_clf())
    b = make_stream_pipeline(StandardScaler(), make_clf())
    bad_y = np.full(CHUNK, 99)
    for i, (Xc, yc) in enumerate(chunks(X, y)):
        kw = {"classes": CLASSES} if i == 0 else {}
        a.partial_fit(Xc, yc, **kw)
        b.partial_fit(Xc, yc, **kw)
        with pytest.raises(ValueError):
            b.partial_fit(Xc, bad_y)
    assert_same_fitted_attrs(a[0], b[0])
    assert_same_state(state(a[-1]), state(b[-1]))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_failed_first_call_leaves_the_steps_unfitted(digits):
    X, y = digits
    pipe = make_stream_pipeline(StandardScaler(), IncrementalPCA(5), make_clf())
    with pytest.raises(ValueError, match="non-zero"):  # raised by the classifier
        pipe.partial_fit(X[:CHUNK], y[:CHUNK], classes=CLASSES, sample_weight=np.zeros(CHUNK))
    for step in pipe.named_steps.values():
        assert fitted_attrs(step) == {}
    streamed(pipe, X, y, classes=CLASSES)  # and it starts cleanly afterwards
    assert pipe.named_steps["standardscaler"].n_samples_seen_ == len(X)


def test_restores_state_that_a_step_updates_in_place():
    # StandardScaler(with_mean=False) on sparse input updates mean_ and var_ in
    # place (sklearn.utils.sparsefuncs.incr_mean_variance_axis), so a shallow copy
    # of the step's __dict__ would not restore them.
    docs, labels = make_text(96, seed=0)
    pipe = make_stream_pipeline(
        HashingVectorizer(n_features=2**8), StandardScaler(with_mean=False), make_clf()
    )
    pipe.partial_fit(docs[:48], labels[:48], classes=["food", "sport"])
    scaler = pipe.named_steps["standardscaler"]
    before = {k: np.copy(v) for k, v in fitted_attrs(scaler).items()}
    with pytest.raises(ValueError):
        pipe.partial_fit(docs[48:], ["cake"] * 48)
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(scaler, k), v, err_msg=k)


# --------------------------------------------------------------- Pipeline behaviour
def test_grid_search_over_a_stream_pipeline(digits):
    X, y = digits
    pipe = StreamPipeline([("scale", StandardScaler()), ("clf", make_clf())])
    search = GridSearchCV(pipe, {"clf__head_lr": [1e-3, 1e-2], "scale": [StandardScaler(),
                          "passthrough"]}, cv=2).fit(X, y)  # fmt: skip
    assert len(search.cv_results_["params"]) == 4
    best = search.best_estimator_
    assert isinstance(best, StreamPipeline)
    best.partial_fit(X[:CHUNK], y[:CHUNK])
    assert best.named_steps["clf"].n_samples_seen_ == len(X) + CHUNK


def test_clone_set_params_and_pickle(digits):
    X, y = digits
    pipe = make_stream_pipeline(StandardScaler(), make_clf())
    twin = clone(pipe)
    assert isinstance(twin, StreamPipeline)
    assert twin.get_params()["onlinefinetuneclassifier__head_lr"] == 1e-2
    streamed(pipe, X[:320], y[:320], classes=CLASSES)
    streamed(twin, X[:320], y[:320], classes=CLASSES)
    np.testing.assert_array_equal(pipe.predict_proba(X), twin.predict_proba(X))

    restored = pickle.loads(pickle.dumps(pipe))
    assert isinstance(restored, StreamPipeline)
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))
    streamed(pipe, X[320:], y[320:])
    streamed(restored, X[320:], y[320:])
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))
    assert pipe.score(X, y) == restored.score(X, y)

    pipe.set_params(onlinefinetuneclassifier__head_lr=0.5)
    assert pipe.get_params()["onlinefinetuneclassifier__head_lr"] == 0.5
    assert pipe.named_steps["onlinefinetuneclassifier"].head_lr == 0.5


def test_slicing_keeps_the_class(digits):
    X, y = digits
    pipe = streamed(make_stream_pipeline(StandardScaler(), make_clf()), X, y, classes=CLASSES)
    head = pipe[:1]
    assert isinstance(head, StreamPipeline)
    assert hasattr(head, "partial_fit")
    np.testing.assert_array_equal(head.transform(X), pipe[0].transform(X))


def test_make_stream_pipeline_mirrors_make_pipeline():
    steps = [StandardScaler(), StandardScaler(), MaxAbsScaler(), make_clf()]
    pipe = make_stream_pipeline(*steps, memory=None, verbose=True)
    reference = make_pipeline(*steps)
    assert type(pipe) is StreamPipeline
    assert [n for n, _ in pipe.steps] == [n for n, _ in reference.steps]
    assert [n for n, _ in pipe.steps][:2] == ["standardscaler-1", "standardscaler-2"]
    assert pipe.verbose is True and pipe.memory is None and pipe.transform_input is None
    assert isinstance(pipe, Pipeline)


def test_verbose_partial_fit_reports_each_step(digits):
    X, y = digits
    pipe = make_stream_pipeline(StandardScaler(), make_clf(), verbose=True)
    out = io.StringIO()
    with redirect_stdout(out):
        pipe.partial_fit(X[:CHUNK], y[:CHUNK], classes=CLASSES)
    text = out.getvalue()
    assert "StreamPipeline" in text
    assert "standardscaler" in text and "onlinefinetuneclassifier" in text


# ------------------------------------------------------------------ routing
def test_unprefixed_params_go_to_the_final_estimator(digits):
    X, y = digits
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X))
    pipe = make_stream_pipeline(StandardScaler(), make_clf())
    scaler, clf = StandardScaler(), make_clf()
    for i, start in enumerate(range(0, len(X), CHUNK)):
        sl = slice(start, start + CHUNK)
        kw = {"classes": CLASSES} if i == 0 else {}
        pipe.partial_fit(X[sl], y[sl], sample_weight=w[sl], **kw)
        scaler.partial_fit(X[sl])  # unweighted: the weights are the final step's
        clf.partial_fit(scaler.transform(X[sl]), y[sl], sample_weight=w[sl], **kw)
    assert_same_fitted_attrs(pipe[0], scaler)
    assert_same_state(state(pipe[-1]), state(clf))


def test_step_prefixed_params_go_to_that_step(digits):
    X, y = digits
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X))
    pipe = StreamPipeline([("scale", StandardScaler()), ("clf", make_clf())])
    scaler, clf = StandardScaler(), make_clf()
    for i, start in enumerate(range(0, len(X), CHUNK)):
        sl = slice(start, start + CHUNK)
        pipe.partial_fit(
            X[sl], y[sl], scale__sample_weight=w[sl], clf__sample_weight=w[sl],
            **({"clf__classes": CLASSES} if i == 0 else {}),
        )  # fmt: skip
        scaler.partial_fit(X[sl], sample_weight=w[sl])
        clf.partial_fit(
            scaler.transform(X[sl]), y[sl], sample_weight=w[sl],
            **({"classes": CLASSES} if i == 0 else {}),
        )  # fmt: skip
    assert_same_fitted_attrs(pipe.named_steps["scale"], scaler)
    assert not np.allclose(scaler.mean_, X.mean(axis=0))  # the weights did count
    assert_same_state(state(pipe.named_steps["clf"]), state(clf))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"nope__sample_weight": np.ones(CHUNK)}, "no step named 'nope'"),
        ({"sample_weight": np.ones(CHUNK), "clf__sample_weight": np.ones(CHUNK)}, "twice"),
        ({"pca__whatever": 1}, "'pca' is not updated by partial_fit"),
        ({"scale__bogus": 1}, "bogus"),
    ],
)
def test_bad_params_raise_before_anything_changes(digits, params, message):
    X, y = digits
    pca = PCA(n_components=5).fit(X)
    pipe = StreamPipeline([("scale", StandardScaler()), ("pca", pca), ("clf", make_clf())])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FrozenStepWarning)  # the frozen PCA is not the point
        with pytest.raises((ValueError, TypeError), match=message):
            pipe.partial_fit(X[:CHUNK], y[:CHUNK], classes=CLASSES, **params)
    assert fitted_attrs(pipe.named_steps["scale"]) == {}
    assert fitted_attrs(pipe.named_steps["clf"]) == {}


def test_transform_input_needs_metadata_routing(digits):
    X, y = digits
    pipe = StreamPipeline([("scale", StandardScaler()), ("clf", make_clf())],
                          transform_input=["X_val"])  # fmt: skip
    with pytest.raises(ValueError, match="metadata routing"):
        pipe.partial_fit(X[:CHUNK], y[:CHUNK], classes=CLASSES)


def test_metadata_routing_routes_requested_params(digits):
    X, y = digits
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X))
    with sklearn.config_context(enable_metadata_routing=True):
        scaler_in = StandardScaler().set_partial_fit_request(sample_weight=True)
        clf_in = make_clf().set_partial_fit_request(sample_weight=False)
        pipe = StreamPipeline([("scale", scaler_in), ("clf", clf_in)])
        scaler, clf = StandardScaler(), make_clf()
        for i, start in enumerate(range(0, len(X), CHUNK)):
            sl = slice(start, start + CHUNK)
            kw = {"classes": CLASSES} if i == 0 else {}
            pipe.partial_fit(X[sl], y[sl], sample_weight=w[sl], **kw)
            scaler.partial_fit(X[sl], sample_weight=w[sl])
            clf.partial_fit(scaler.transform(X[sl]), y[sl], **kw)
        assert_same_fitted_attrs(pipe.named_steps["scale"], scaler)
        assert_same_state(state(pipe.named_steps["clf"]), state(clf))

        unrequested = StreamPipeline([("scale", StandardScaler()), ("clf", make_clf())])
        with pytest.raises(ValueError, match="sample_weight"):
            unrequested.partial_fit(X[:CHUNK], y[:CHUNK], sample_weight=w[:CHUNK],
                                    classes=CLASSES)  # fmt: skip


class _RecordsValidationSet(ClassifierMixin, BaseEstimator):
    """Final estimator whose partial_fit takes metadata, to test transform_input."""

    def fit(self, X, y, X_val=None):
        return self.partial_fit(X, y, X_val=X_val)

    def partial_fit(self, X, y, X_val=None):
        self.X_val_ = X_val
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_transform_input_with_metadata_routing(digits):
    X, y = digits
    with sklearn.config_context(enable_metadata_routing=True):
        final = _RecordsValidationSet().set_partial_fit_request(X_val=True)
        pipe = StreamPipeline(
            [("scale", StandardScaler()), ("final", final)], transform_input=["X_val"]
        )
        pipe.partial_fit(X[:CHUNK], y[:CHUNK], X_val=X[CHUNK : 2 * CHUNK])
    scaler = StandardScaler().partial_fit(X[:CHUNK])
    np.testing.assert_array_equal(final.X_val_, scaler.transform(X[CHUNK : 2 * CHUNK]))


# ---------------------------------------------------------------- fit atomicity
class _FailsAfterChanging(ClassifierMixin, BaseEstimator):
    """A final estimator that changes its state, then raises, in fit."""

    def fit(self, X, y):
        self.classes_ = np.array(["spoiled"])
        self.n_features_in_ = -1
        raise RuntimeError("fit failed half way")

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_failed_fit_leaves_predictions_bit_identical(digits):
    X, y = digits
    pipe = make_stream_pipeline(StandardScaler(), make_clf()).fit(X[:240], y[:240])
    scaler_before = {k: np.copy(v) for k, v in fitted_attrs(pipe[0]).items()}
    clf_before = state(pipe[-1])
    proba = pipe.predict_proba(X)

    # Other data, and labels that the classifier refuses after the scaler refitted.
    bad_y = y[240:].astype(float)
    bad_y[5] = np.nan
    with pytest.raises(ValueError):
        pipe.fit(X[240:] * 3 + 1, bad_y)

    for k, v in scaler_before.items():
        np.testing.assert_array_equal(getattr(pipe[0], k), v, err_msg=k)
    assert fitted_attrs(pipe[0]).keys() == scaler_before.keys()
    assert_same_state(state(pipe[-1]), clf_before)
    np.testing.assert_array_equal(pipe.predict_proba(X), proba)
    # And it goes on learning as if the failed call never happened.
    twin = make_stream_pipeline(StandardScaler(), make_clf()).fit(X[:240], y[:240])
    pipe.partial_fit(X[240:272], y[240:272])
    twin.partial_fit(X[240:272], y[240:272])
    np.testing.assert_array_equal(pipe.predict_proba(X), twin.predict_proba(X))


def test_failed_fit_restores_a_final_estimator_that_changed_before_raising(digits):
    X, y = digits
    pipe = StreamPipeline([("scale", StandardScaler()), ("final", _FailsAfterChanging())])
    with pytest.raises(RuntimeError, match="half way"):
        pipe.fit(X, y)
    assert fitted_attrs(pipe.named_steps["scale"]) == {}
    assert fitted_attrs(pipe.named_steps["final"]) == {}


def test_failed_fit_with_memory_puts_the_original_steps_back(digits, tmp_path):
    X, y = digits
    scaler, final = StandardScaler(), _FailsAfterChanging()
    pipe = StreamPipeline([("scale", scaler), ("final", final)], memory=str(tmp_path))
    with pytest.raises(RuntimeError):
        pipe.fit(X, y)
    # With memory, Pipeline.fit swaps in fitted clones; the failure swaps them out.
    assert pipe.named_steps["scale"] is scaler
    assert fitted_attrs(scaler) == {}


@pytest.mark.parametrize("method", ["fit_predict", "fit_transform"])
def test_failed_fit_predict_and_fit_transform_restore_every_step(digits, method):
    X, y = digits
    if method == "fit_predict":
        pipe = make_stream_pipeline(StandardScaler(), MiniBatchKMeans(3, n_init=1))
        pipe.fit(X[:200])
        bad = dict(minibatchkmeans__sample_weight=np.ones(3))  # wrong length
    else:
        pipe = make_stream_pipeline(StandardScaler(), IncrementalPCA(5)).fit(X[:200])
        bad = dict(incrementalpca__bogus=1)
    before = [{k: np.copy(v) for k, v in fitted_attrs(s).items()} for _, s in pipe.steps]
    with pytest.raises((ValueError, TypeError)):
        getattr(pipe, method)(X[200:] + 5, y[200:], **bad)
    for (_, step), attrs in zip(pipe.steps, before, strict=True):
        assert fitted_attrs(step).keys() == attrs.keys()
        for k, v in attrs.items():
            np.testing.assert_array_equal(getattr(step, k), v, err_msg=k)


# ------------------------------------------------------------ values no step learns from
def _learned(pipe):
    """Every step's fitted attributes, and the classifier's weights."""
    out = [{k: np.copy(v) for k, v in fitted_attrs(s).items()} for _, s in pipe.steps[:-1]]
    return out, state(pipe[-1])


def _assert_unchanged(pipe, before):
    steps, weights = before
    for (_, step), attrs in zip(pipe.steps[:-1], steps, strict=True):
        assert fitted_attrs(step).keys() == attrs.keys()
        for k, v in attrs.items():
            np.testing.assert_array_equal(getattr(step, k), v, err_msg=k)
    assert_same_state(state(pipe[-1]), weights)


@pytest.mark.parametrize(
    "value, message",
    [
        (1e39, r"1e\+39 is beyond float32's range"),
        (-1e300, r"-1e\+300 is beyond float32's range"),
        (np.inf, "inf is not finite"),
        (-np.inf, "-inf is not finite"),
    ],
)
def test_out_of_range_value_is_refused_before_any_step_learns(digits, value, message):
    X, y = digits
    pipe = make_stream_pipeline(StandardScaler(), make_clf())
    pipe.partial_fit(X[:CHUNK], y[:CHUNK], classes=CLASSES)
    before = _learned(pipe)
    Xc = X[CHUNK : 2 * CHUNK].copy()
    Xc[3, 5] = value
    Xc[7, 1] = value  # a second one, counted but not named
    with pytest.raises(ValueError, match=rf"row 3, column index 5: {message}.* \(2 such values"):
        pipe.partial_fit(Xc, y[CHUNK : 2 * CHUNK])
    _assert_unchanged(pipe, before)
    assert pipe[0].scale_.max() < 1e3  # not 3.8e37

    # fit screens the same way and leaves the fitted pipeline as it was.
    with pytest.raises(ValueError, match=message):
        pipe.fit(Xc, y[CHUNK : 2 * CHUNK])
    _assert_unchanged(pipe, before)


def test_largest_float32_itself_is_accepted(digits):
    X, y = digits
    Xc = X[:CHUNK].copy()
    Xc[0, 0] = float(np.finfo(np.float32).max)
    pipe = make_stream_pipeline(MaxAbsScaler(), make_clf())
    pipe.partial_fit(Xc, y[:CHUNK], classes=CLASSES)
    assert pipe[0].max_abs_[0] == np.finfo(np.float32).max


def test_the_error_names_dataframe_columns(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    frame = pd.DataFrame(X[:CHUNK], columns=[f"px{j}" for j in range(X.shape[1])])
    frame["city"] = "Oslo"  # a text column is not screened
    frame.loc[4, "px9"] = np.inf
    pipe = StreamPipeline([("scale", StandardScaler()), ("clf", make_clf())])
    with pytest.raises(ValueError, match=r"row 4, column 'px9': inf is not finite"):
        pipe.partial_fit(frame, y[:CHUNK], classes=CLASSES)
    assert fitted_attrs(pipe.named_steps["scale"]) == {}


def test_a_stream_chunk_gives_file_line_and_column(digits):
    from skocl.stream import StreamChunk, StreamError

    X, y = digits
    Xc = X[:4].copy()
    Xc[2, 3] = 1e39
    lines = np.array([2, 3, 7, 8])  # line 4..6 were blank or dropped
    pipe = make_stream_pipeline(StandardScaler(), make_clf())
    chunk = StreamChunk(Xc, y[:4], "day2.csv", 2, 0, lines)
    with pytest.raises(StreamError, match=r"^day2\.csv, line 7, column index 3: 1e\+39") as err:
        pipe.partial_fit(chunk, classes=CLASSES)
    assert (err.value.source, err.value.line, err.value.column) == ("day2.csv", 7, "3")
    assert fitted_attrs(pipe[0]) == {}

    parquet = StreamChunk(Xc, y[:4], "day2.parquet", 2, 0, lines)
    with pytest.raises(StreamError, match=r"^day2\.parquet, row 7, column index 3"):
        pipe.partial_fit(parquet, classes=CLASSES)
    in_memory = StreamChunk(Xc, y[:4], "<ndarray>", None, 5, None)
    with pytest.raises(StreamError, match=r"^<ndarray>, chunk 5, row 2 of the chunk"):
        pipe.partial_fit(in_memory, classes=CLASSES)
    with pytest.raises(ValueError, match="pass y=None"):
        pipe.partial_fit(chunk, y[:4], classes=CLASSES)

    # A clean chunk is unpacked: X and y both come from it.
    clean = StreamChunk(X[:CHUNK], y[:CHUNK], "day2.csv", 2, 0, np.arange(2, 2 + CHUNK))
    pipe.partial_fit(clean, classes=CLASSES)
    twin = make_stream_pipeline(StandardScaler(), make_clf())
    twin.partial_fit(X[:CHUNK], y[:CHUNK], classes=CLASSES)
    np.testing.assert_array_equal(pipe.predict_proba(X), twin.predict_proba(X))


def test_a_stream_chunk_from_a_reader_is_located(tmp_path, digits):
    from skocl.stream import StreamError, read_csv

    X, y = digits
    path = tmp_path / "d.csv"
    rows = ["a,b,label"] + [f"{X[i, 20]},{X[i, 21]},{y[i]}" for i in range(40)]
    rows[6] = "1e39,1.0,3"  # line 7 of the file
    path.write_text("\n".join(rows) + "\n")
    pipe = make_stream_pipeline(StandardScaler(), make_clf())
    try:
        chunks = list(read_csv(path, target="label", chunksize=16))
    except StreamError as exc:  # a reader that refuses the value itself is fine too
        assert exc.line == 7
        return
    with pytest.raises(StreamError, match=r"d\.csv, line 7, column"):
        pipe.partial_fit(chunks[0], classes=CLASSES)
    assert fitted_attrs(pipe[0]) == {}


def test_nan_is_refused_unless_the_first_step_takes_missing_values(digits):
    from sklearn.impute import SimpleImputer

    X, y = digits
    Xc = X[:CHUNK].copy()
    Xc[6, 2] = np.nan
    pca_first = make_stream_pipeline(IncrementalPCA(5), make_clf())
    with pytest.raises(ValueError, match=r"row 6, column index 2: missing value \(NaN\)"):
        pca_first.partial_fit(Xc, y[:CHUNK], classes=CLASSES)
    assert fitted_attrs(pca_first[0]) == {}

    imputed = make_stream_pipeline(SimpleImputer().fit(X), StandardScaler(), make_clf())
    with pytest.warns(FrozenStepWarning, match="SimpleImputer"):
        imputed.partial_fit(Xc, y[:CHUNK], classes=CLASSES)
    assert not np.isnan(imputed[1].mean_).any()
    # A value beyond float32 is still refused, whatever the first step.
    Xc[0, 0] = 1e39
    with pytest.raises(ValueError, match="float32"):
        imputed.partial_fit(Xc, y[:CHUNK])  # refused before the frozen step's warning


def test_sparse_and_mixed_object_chunks_are_screened(digits):
    import scipy.sparse as sp

    X, y = digits
    Xs = sp.lil_matrix(X[:CHUNK])
    Xs[9, 30] = -np.inf
    Xs = Xs.tocsr()
    pipe = make_stream_pipeline(MaxAbsScaler(), make_clf())
    with pytest.raises(ValueError, match=r"row 9, column index 30: -inf"):
        pipe.partial_fit(Xs, y[:CHUNK], classes=CLASSES)
    assert fitted_attrs(pipe[0]) == {}

    mixed = np.empty((3, 2), dtype=object)
    mixed[:, 0] = ["red", "blue", "red"]
    mixed[:, 1] = [1.0, 1e39, 2.0]
    final = StreamPipeline([("f", FunctionTransformer()), ("clf", SGDClassifier())])
    with pytest.raises(ValueError, match=r"row 1, column index 1: 1e\+39"):
        final.partial_fit(mixed, [0, 1, 0], classes=[0, 1])
