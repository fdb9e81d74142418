"""Several tasks over one trunk: y of shape (n_samples, n_tasks), a head per task."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _util import assert_same_tree
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skocl
from skocl import OnlineFineTuneClassifier, StreamPipeline

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    """Digits with three tasks: the digit, its parity and whether it is above four."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    Y = np.column_stack([y, y % 2, (y > 4).astype(int)])
    return X, Y


def heads(clf):
    return list(clf.learner_.head.heads)


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def head_state(clf, t):
    """Task t's head weights and its optimizer state, copied."""
    head = heads(clf)[t]
    opt = clf.learner_.head_optimizer
    return weights(head), [
        {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[p].items()}
        for p in head.parameters()
        if p in opt.state
    ]


def test_sklearn_multi_output_conventions(digits):
    X, Y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:1000], Y[:1000])
    assert clf.n_outputs_ == 3 and len(heads(clf)) == 3
    assert [c.tolist() for c in clf.classes_] == [list(range(10)), [0, 1], [0, 1]]
    pred = clf.predict(X[1000:])
    assert pred.shape == (len(X) - 1000, 3)
    proba = clf.predict_proba(X[1000:])
    assert [p.shape[1] for p in proba] == [10, 2, 2]
    for p in proba:
        np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    # predict is each task's most probable class.
    for t, p in enumerate(proba):
        np.testing.assert_array_equal(pred[:, t], clf.classes_[t][p.argmax(1)])
    subset = np.mean(np.all(pred == Y[1000:], axis=1))
    assert clf.score(X[1000:], Y[1000:]) == pytest.approx(subset)
    assert subset > 0.85
    for t, floor in enumerate([0.9, 0.9, 0.9]):
        assert np.mean(pred[:, t] == Y[1000:, t]) > floor


def test_labels_of_any_type_per_task(digits):
    X, Y = digits
    names = np.array(["even", "odd"], dtype=object)[Y[:, 1]]
    Ys = np.column_stack([Y[:, 0], names]).astype(object)
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:600], Ys[:600])
    assert clf.classes_[1].tolist() == ["even", "odd"]
    pred = clf.predict(X[600:700])
    assert pred.dtype == object and set(pred[:, 1]) <= {"even", "odd"}
    assert clf.score(X[600:], Ys[600:]) > 0.8


def test_one_column_y_is_one_task(digits):
    X, Y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's DataConversionWarning for a column
        clf = OnlineFineTuneClassifier(random_state=0, max_iter=5).fit(X[:300], Y[:300, :1])
    assert isinstance(clf.classes_, np.ndarray) and clf.n_outputs_ == 1
    assert clf.predict(X[:5]).shape == (5,)


def test_online_step_learns_every_task(digits):
    X, Y = digits
    clf = OnlineFineTuneClassifier(random_state=0)
    for s in range(0, 1500, 100):
        clf.partial_fit(X[s : s + 100], Y[s : s + 100])
    pred = clf.predict(X[1500:])
    for t in range(3):  # the digit alone, learned the same way: 0.862
        assert np.mean(pred[:, t] == Y[1500:, t]) > 0.8


def test_a_task_without_labels_in_a_chunk_is_left_alone(digits):
    X, Y = digits
    # No replay: replayed rows would bring task 1's labels into the chunk's update.
    clf = OnlineFineTuneClassifier(random_state=0, memory_size=0).fit(X[:500], Y[:500])
    clf.partial_fit(X[500:600], Y[500:600])  # every head has optimizer state now
    before = head_state(clf, 1)
    chunk = Y[600:700].astype(float)
    chunk[:, 1] = np.nan  # task 1 unlabelled in this chunk
    trunk = weights(clf.learner_.trunk)
    clf.partial_fit(X[600:700], chunk)
    assert_same_tree(before, head_state(clf, 1))  # head 1 and its Adam state: same bits
    assert not all(
        torch.equal(a, b) for a, b in zip(trunk.values(), weights(clf.learner_.trunk).values())
    )


def test_missing_labels_teach_nothing(digits):
    """Rows whose label for a task is missing give that task's loss nothing: a chunk with
    some task-1 labels missing moves head 1 as the chunk of the labelled rows alone."""
    X, Y = digits
    a = OnlineFineTuneClassifier(random_state=0, trunk_lr=0, memory_size=0).fit(X[:400], Y[:400])
    b = OnlineFineTuneClassifier(random_state=0, trunk_lr=0, memory_size=0).fit(X[:400], Y[:400])
    chunk = Y[400:500].astype(float)
    missing = np.arange(100) % 3 == 0
    chunk[missing, 1] = np.nan
    a.partial_fit(X[400:500], chunk)
    only = Y[400:500].astype(float)[~missing]
    only[:, [0, 2]] = np.nan  # the labelled rows, for task 1 only
    b.partial_fit(X[400:500][~missing], only)
    torch.testing.assert_close(weights(heads(a)[1]), weights(heads(b)[1]))


def test_replay_rows_carry_every_task_label(digits):
    X, Y = digits
    Yf = Y.astype(float)
    Yf[::4, 2] = np.nan
    clf = OnlineFineTuneClassifier(random_state=0, memory_size=200)
    for s in range(0, 600, 100):
        clf.partial_fit(X[s : s + 100], Yf[s : s + 100])
    memory = clf.learner_.memory
    assert len(memory) == 200 and memory.y.shape == (200, 3)
    tasks = clf.learner_.tasks
    rows = {tuple(r) for r in X[:600].round(6).tolist()}
    assert all(tuple(r) in rows for r in memory.X.numpy().round(6).tolist())
    # Labels are global indices, missing ones stay missing.
    y = memory.y.numpy()
    assert (y[:, 0] >= 0).all() and (y[:, 1] >= tasks.offsets[1]).all()
    assert (y[:, 2] == -1).any() and (y[y[:, 2] >= 0, 2] >= tasks.offsets[2]).all()


def test_a_wider_y_adds_a_head_and_keeps_the_rest_exactly(digits):
    X, Y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], Y[:500, :2])
    clf.partial_fit(X[500:600], Y[500:600, :2])
    old = [head_state(clf, t) for t in range(2)]
    trunk = weights(clf.learner_.trunk)
    clf.set_params(trunk_epochs=0, head_steps=0)  # the growth alone, no learning
    clf.partial_fit(X[600:700], Y[600:700])
    assert len(heads(clf)) == 3 and clf.classes_[2].tolist() == [0, 1]
    assert_same_tree(old, [head_state(clf, t) for t in range(2)])
    assert_same_tree(trunk, weights(clf.learner_.trunk))
    clf.set_params(trunk_epochs=1, head_steps=3)
    for s in range(700, 1500, 100):
        clf.partial_fit(X[s : s + 100], Y[s : s + 100])
    assert np.mean(clf.predict(X[1500:])[:, 2] == Y[1500:, 2]) > 0.75


def test_a_task_grows_its_label_set_alone(digits):
    X, Y = digits
    low = Y[:, 0] < 5
    clf = OnlineFineTuneClassifier(random_state=0).partial_fit(X[low][:200], Y[low][:200])
    assert clf.classes_[0].tolist() == [0, 1, 2, 3, 4]
    assert clf.classes_[2].tolist() == [0]  # "greater than four" grows too, below
    others = [head_state(clf, 1)]
    trunk = weights(clf.learner_.trunk)
    old_rows = weights(heads(clf)[0])
    clf.set_params(trunk_epochs=0, head_steps=0)
    clf.partial_fit(X[~low][:100], Y[~low][:100])
    assert clf.classes_[0].tolist() == list(range(10))
    assert heads(clf)[0].out_features == 10
    assert_same_tree(others, [head_state(clf, 1)])
    assert heads(clf)[2].out_features == 2
    assert_same_tree(trunk, weights(clf.learner_.trunk))
    grown = weights(heads(clf)[0])
    assert torch.equal(grown["weight"][:5], old_rows["weight"])
    # Replayed labels follow: task 1's global indices moved by the five new classes.
    assert (clf.learner_.memory.y[:, 1] >= 10).all()
    assert set(clf.learner_.memory.y[:, 2].tolist()) == {12, 13}  # ">4": no, yes


def test_fixed_label_sets_per_task(digits):
    X, Y = digits
    classes = [list(range(10)), [0, 1], [0, 1]]
    clf = OnlineFineTuneClassifier(random_state=0)
    clf.partial_fit(X[:100][Y[:100, 0] < 5], Y[:100][Y[:100, 0] < 5], classes=classes)
    assert heads(clf)[0].out_features == 10
    proba = clf.predict_proba(X[:50])[0]
    assert (proba[:, 5:] == 0).all()  # not shown yet: never predicted
    bad = Y[100:110].copy()
    bad[0, 1] = 7
    with pytest.raises(ValueError, match=r"y column 1: .*7.* fixed by `classes`"):
        clf.partial_fit(X[100:110], bad)


def test_a_failed_call_leaves_every_head_as_it_was(digits):
    X, Y = digits

    class Exploding:
        def __init__(self):
            self.calls = 0

        def update(self, x):
            self.calls += 1
            if self.calls > 150:
                raise RuntimeError("detector failed")

        drift_detected = False

        def clone(self):
            return Exploding()

    clf = OnlineFineTuneClassifier(random_state=0, drift_detector=Exploding())
    clf.partial_fit(X[:100], Y[:100, :2])
    clf.partial_fit(X[100:200], Y[100:200, :2])
    before = weights(clf.module_), clf.learner_.memory.state_dict(), clf.learner_.state_dict()
    with pytest.raises(RuntimeError, match="detector failed"):
        clf.partial_fit(X[200:300], Y[200:300])  # a new task, then the failure
    assert len(heads(clf)) == 2 and len(clf.classes_) == 2
    after = weights(clf.module_), clf.learner_.memory.state_dict(), clf.learner_.state_dict()
    assert_same_tree(before, after)


def test_save_load_and_resume_exactly(digits, tmp_path):
    X, Y = digits
    Yf = Y.astype(float)
    Yf[::3, 1] = np.nan
    clf = OnlineFineTuneClassifier(random_state=0, fusion="ema").fit(X[:400], Y[:400])
    clf.partial_fit(X[400:500], Yf[400:500])
    path = skocl.save(clf, tmp_path / "tasks.skocl")
    assert skocl._persist.read_meta(path)["format_version"] == 4
    again = skocl.load(path)
    for a, b in zip(clf.predict_proba(X), again.predict_proba(X)):
        np.testing.assert_array_equal(a, b)
    for model in (clf, again):
        model.partial_fit(X[500:600], Yf[500:600])
    for a, b in zip(clf.predict_proba(X), again.predict_proba(X)):
        np.testing.assert_array_equal(a, b)


def test_in_pipelines_searches_and_cross_validation(digits):
    X, Y = digits
    pipe = make_pipeline(StandardScaler(), OnlineFineTuneClassifier(random_state=0, max_iter=50))
    scores = cross_val_score(pipe, X[:600], Y[:600], cv=KFold(3))
    assert scores.shape == (3,) and (scores > 0.6).all()
    search = GridSearchCV(
        OnlineFineTuneClassifier(random_state=0, max_iter=30),
        {"hidden_layer_sizes": [(32,), (64,)]},
        cv=KFold(2),
    ).fit(X[:400], Y[:400])
    assert search.best_estimator_.n_outputs_ == 3
    stream = StreamPipeline(
        [("scale", StandardScaler()), ("clf", OnlineFineTuneClassifier(random_state=0))]
    )
    for s in range(0, 600, 100):
        stream.partial_fit(X[s : s + 100], Y[s : s + 100])
    assert stream.predict(X[600:]).shape == (len(X) - 600, 3) and stream.n_outputs_ == 3


def test_sparse_input_with_several_tasks(digits):
    X, Y = digits
    Xs = sp.csr_matrix(X)
    clf = OnlineFineTuneClassifier(random_state=0)
    for s in range(0, 1000, 100):
        clf.partial_fit(Xs[s : s + 100], Y[s : s + 100])
    assert clf.learner_.sparse and clf.learner_.memory.y.shape[1] == 3
    assert clf.score(Xs[1000:], Y[1000:]) > 0.5


def test_drift_is_watched_per_task(digits):
    X, Y = digits
    clf = OnlineFineTuneClassifier(random_state=0)
    for s in range(0, 600, 100):
        clf.partial_fit(X[s : s + 100], Y[s : s + 100])
    flipped = Y.copy()
    flipped[:, 1] = 1 - flipped[:, 1]  # task 1's concept flips, the others stay
    for s in range(600, 1400, 100):
        clf.partial_fit(X[s : s + 100], flipped[s : s + 100])
    drifts = clf.drifts_
    assert len(drifts) == 3 and drifts[1] and 600 < drifts[1][0] <= 800
    # Right after the flip task 1 is at 0.15; a model of task 1 alone, learned the same
    # way, recovers to 0.69 (seed 0).
    assert np.mean(clf.predict(X[1400:])[:, 1] == flipped[1400:, 1]) > 0.65


def one_task(X, Y):
    return OnlineFineTuneClassifier(max_iter=2).fit(X[:50], Y[:50, 0]), X[50:60], Y[50:60]


def three_tasks(X, Y):
    return OnlineFineTuneClassifier(max_iter=2).fit(X[:50], Y[:50]), X[50:60], Y[50:60, :2]


@pytest.mark.parametrize(
    "make, match",
    [
        (one_task, r"several tasks, but this model learns one"),
        (three_tasks, r"this model learns 3 tasks: y needs a column per task"),
    ],
)
def test_shape_errors_name_the_tasks(digits, make, match):
    X, Y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf, Xc, Yc = make(X, Y)
    before = weights(clf.module_)
    with pytest.raises(ValueError, match=match):
        clf.partial_fit(Xc, Yc)
    assert_same_tree(before, weights(clf.module_))


def test_input_errors(digits):
    X, Y = digits
    Yf = Y[:50].astype(float)
    Yf[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"y column 2 has no label on any row"):
        OnlineFineTuneClassifier().fit(X[:50], Yf)
    with pytest.raises(ValueError, match=r"y has 3 columns .*a head per task.*TaskHeads"):
        OnlineFineTuneClassifier(
            torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Linear(8, 10))
        ).fit(X[:50], Y[:50])
    clf = OnlineFineTuneClassifier(max_iter=2).fit(X[:50], Y[:50])
    with pytest.raises(ValueError, match=r"skorch's NeuralNetClassifier predicts one label"):
        clf.to_skorch()


def test_metrics_report_each_task(digits):
    from skocl.metrics import evaluate_tasks, forgetting, score_outputs

    X, Y = digits
    clf = OnlineFineTuneClassifier(random_state=0, max_iter=50).fit(X[:600], Y[:600])
    Yf = Y[600:].astype(float)
    Yf[::2, 1] = np.nan
    scores = score_outputs(clf, X[600:], Yf)
    pred = clf.predict(X[600:])
    assert scores[0] == pytest.approx(np.mean(pred[:, 0] == Y[600:, 0]))
    assert scores[1] == pytest.approx(np.mean(pred[1::2, 1] == Y[600:][1::2, 1]))
    # Forgetting per task over two phases (digits 0-4, then 5-9).
    low = Y[:, 0] < 5
    phases = [(X[low][:300], Y[low][:300]), (X[~low][:300], Y[~low][:300])]
    held_out = [(X[low][300:], Y[low][300:]), (X[~low][300:], Y[~low][300:])]
    model = OnlineFineTuneClassifier(random_state=0, classes=[list(range(10)), [0, 1], [0, 1]])
    rows = {t: [] for t in range(3)}
    for Xp, Yp in phases:
        for s in range(0, len(Xp), 100):
            model.partial_fit(Xp[s : s + 100], Yp[s : s + 100])
        for t in range(3):
            rows[t].append(evaluate_tasks(model, held_out, output=t))
    for t in range(3):
        R = np.vstack(rows[t])
        assert R.shape == (2, 2) and R[0, 0] > 0.75  # phase 1 learned, each task
        assert 0 <= forgetting(R) <= 1


def test_a_task_given_but_not_labelled_yet_does_not_stop_the_others(digits):
    X, Y = digits
    Yp = Y[:300].astype(float)
    Yp[:, 0] = np.nan  # the digit task: its label set given, no label yet
    clf = OnlineFineTuneClassifier(random_state=0)
    trunk = weights(
        clf.partial_fit(X[:100], Yp[:100], classes=[range(10), [0, 1], [0, 1]]).learner_.trunk
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no step skipped as non-finite
        clf.partial_fit(X[100:200], Yp[100:200])
    assert clf.n_skipped_steps_ == 0
    assert not torch.equal(
        next(iter(trunk.values())), next(iter(weights(clf.learner_.trunk).values()))
    )
    proba = clf.predict_proba(X[:5])[0]
    assert np.isfinite(proba).all() and np.allclose(proba.sum(1), 1, rtol=1e-5)


def test_replay_is_task_balanced(digits):
    """A task labelled on few rows gets an equal share of the replayed labels."""
    X, Y = digits
    Yf = Y[:1000].astype(float)
    Yf[np.random.RandomState(0).rand(1000) > 0.05, 0] = np.nan
    clf = OnlineFineTuneClassifier(random_state=0, memory_size=2000)
    for s in range(0, 1000, 100):
        clf.partial_fit(X[s : s + 100], Yf[s : s + 100])
    memory = clf.learner_.memory
    assert (memory.y[:, 0] >= 0).float().mean() < 0.1  # kept as the stream gave them
    _, y = memory.sample(300, torch.Generator().manual_seed(0))
    assert (y[:, 0] >= 0).sum() >= 100  # a third of the draws, not 5%
    assert (y >= 0).any(1).all()


def test_rows_without_any_label(digits):
    X, Y = digits
    clf = OnlineFineTuneClassifier(random_state=0, max_iter=5).fit(X[:300], Y[:300])
    chunk = Y[300:400].astype(float)
    chunk[:50] = np.nan  # half the rows carry no label at all
    clf.partial_fit(X[300:400], chunk)
    assert (clf.learner_.memory.y >= 0).any(1).all()  # such rows are not kept for replay
    # ... nor scored: score is the subset accuracy of the labelled rows only.
    pred = clf.predict(X[350:400])
    assert clf.score(X[300:400], chunk) == pytest.approx(np.all(pred == Y[350:400], 1).mean())
    before = weights(clf.module_)
    with pytest.raises(ValueError, match="no label on any row of this chunk"):
        clf.partial_fit(X[400:450], np.full((50, 3), np.nan))
    assert_same_tree(before, weights(clf.module_))


def test_a_module_of_your_own_with_a_head_per_task(digits, tmp_path):
    from skocl import TaskHeads, TrunkHeadNet

    X, Y = digits
    torch.manual_seed(0)
    net = TrunkHeadNet(
        torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()),
        TaskHeads([torch.nn.Linear(32, 10), torch.nn.Linear(32, 2)]),
    )
    clf = OnlineFineTuneClassifier(net, random_state=0).fit(X[:600], Y[:600, :2])
    assert clf.module_.head.sizes == [10, 2] and net.head.sizes == [10, 2]  # a copy
    clf.partial_fit(X[600:650], Y[600:650, :2])  # the online optimizers now hold state
    old = [head_state(clf, t) for t in range(2)]
    clf.set_params(trunk_epochs=0, head_steps=0)
    clf.partial_fit(X[600:700], Y[600:700])  # a third task: a linear head joins
    assert clf.module_.head.sizes == [10, 2, 2]
    assert_same_tree(old, [head_state(clf, t) for t in range(2)])
    clf.set_params(trunk_epochs=1, head_steps=3)
    for s in range(700, 1200, 100):
        clf.partial_fit(X[s : s + 100], Y[s : s + 100])
    assert np.mean(clf.predict(X[1200:]) == Y[1200:], axis=0).min() > 0.75
    path = skocl.save(clf, tmp_path / "own.skocl")
    # An instance of the module as it now is (three heads); its weights are replaced.
    instance = copy.deepcopy(clf.module_)
    with torch.no_grad():
        for p in instance.parameters():
            p.zero_()
    again = skocl.load(path, module=instance)
    for a, b in zip(again.predict_proba(X[1200:]), clf.predict_proba(X[1200:])):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"TaskHeads gives \[10, 2\] outputs per task"):
        OnlineFineTuneClassifier(net).fit(X[:100], np.column_stack([Y[:100, 0], Y[:100, 0]]))
    with pytest.raises(TypeError, match="one nn.Linear per task"):
        TaskHeads([torch.nn.Sequential(torch.nn.Linear(32, 2))])
