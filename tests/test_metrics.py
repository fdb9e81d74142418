"""Tests of the continual-learning metrics in skocl/metrics.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from skocl.metrics import (
    average_accuracy,
    backward_transfer,
    evaluate_tasks,
    forgetting,
    forward_transfer,
)

# Hand-checked example: row i is the model after task i, column j the task scored.
R3 = np.array(
    [
        [0.9, 0.1, 0.0],
        [0.5, 0.8, 0.2],
        [0.4, 0.6, 0.7],
    ]
)
R2 = np.array([[0.8, 0.3], [0.6, 0.9]])


def random_matrix(T: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(T, T))


# -- hand-computed values ---------------------------------------------------------------


def test_values_3x3():
    assert average_accuracy(R3) == pytest.approx((0.4 + 0.6 + 0.7) / 3)
    assert average_accuracy(R3) == pytest.approx(0.5667, abs=1e-4)
    np.testing.assert_allclose(forgetting(R3, per_task=True), [0.9 - 0.4, 0.8 - 0.6])
    assert forgetting(R3) == pytest.approx(0.35)
    assert backward_transfer(R3) == pytest.approx(-0.35)
    assert forward_transfer(R3, [0.1, 0.0, 0.1]) == pytest.approx(((0.1 - 0.0) + (0.2 - 0.1)) / 2)


def test_values_2x2():
    assert average_accuracy(R2) == pytest.approx(0.75)
    assert forgetting(R2) == pytest.approx(0.2)
    np.testing.assert_allclose(forgetting(R2, per_task=True), [0.2])
    assert backward_transfer(R2) == pytest.approx(-0.2)
    assert forward_transfer(R2, [0.5, 0.1]) == pytest.approx(0.2)


def test_forgetting_uses_best_earlier_score_not_diagonal():
    # Task 0 peaks at stage 1, after the diagonal: forgetting measures from the peak,
    # backward transfer from the diagonal.
    R = np.array(
        [
            [0.6, 0.0, 0.0],
            [0.9, 0.7, 0.0],
            [0.5, 0.7, 0.8],
        ]
    )
    np.testing.assert_allclose(forgetting(R, per_task=True), [0.4, 0.0])
    assert backward_transfer(R) == pytest.approx(((0.5 - 0.6) + (0.7 - 0.7)) / 2)


def test_forgetting_negative_when_final_score_is_best():
    R = np.array([[0.5, 0.0], [0.7, 0.9]])
    assert forgetting(R) == pytest.approx(-0.2)
    assert backward_transfer(R) == pytest.approx(0.2)


def test_upto():
    assert average_accuracy(R3, upto=0) == pytest.approx(0.9)
    assert average_accuracy(R3, upto=1) == pytest.approx((0.5 + 0.8) / 2)
    assert average_accuracy(R3, upto=2) == average_accuracy(R3)
    assert average_accuracy(R3, upto=np.int64(1)) == pytest.approx(0.65)


def test_single_task_average():
    assert average_accuracy([[0.7]]) == pytest.approx(0.7)


# -- properties and equivalences --------------------------------------------------------


@pytest.mark.parametrize("T", [2, 3, 5])
def test_perfect_memory(T):
    # Each task learned to 1.0 and never dropped afterwards.
    R = np.triu(np.full((T, T), 0.3), k=1) + np.tril(np.ones((T, T)))
    assert forgetting(R) == 0.0
    np.testing.assert_array_equal(forgetting(R, per_task=True), np.zeros(T - 1))
    assert backward_transfer(R) == 0.0
    assert average_accuracy(R) == 1.0


@pytest.mark.parametrize("T", [1, 2, 4, 7])
def test_upto_equals_leading_submatrix(T):
    R = random_matrix(T, seed=T)
    for i in range(T):
        assert average_accuracy(R, upto=i) == pytest.approx(average_accuracy(R[: i + 1, : i + 1]))


@pytest.mark.parametrize("seed", range(5))
def test_two_tasks_forgetting_is_minus_bwt(seed):
    # With T = 2 the best earlier score of task 0 is its diagonal entry.
    R = random_matrix(2, seed)
    assert forgetting(R) == pytest.approx(-backward_transfer(R))


@pytest.mark.parametrize("seed", range(5))
def test_forgetting_bounds_bwt(seed):
    # max over earlier stages >= the diagonal entry, so forgetting >= -BWT.
    R = random_matrix(6, seed)
    assert forgetting(R) >= -backward_transfer(R) - 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_forward_transfer_zero_against_own_superdiagonal(seed):
    R = random_matrix(4, seed)
    baseline = np.concatenate([[0.0], np.diag(R, k=1)])
    assert forward_transfer(R, baseline) == pytest.approx(0.0)
    # Raising every baseline score by c lowers FWT by c.
    assert forward_transfer(R, baseline + 0.1) == pytest.approx(-0.1)


def test_accepts_lists_and_ints_and_returns_floats():
    R = [[1, 0], [0, 1]]
    for value in (average_accuracy(R), forgetting(R), backward_transfer(R)):
        assert type(value) is float
    assert type(forward_transfer(R, [0, 0])) is float
    assert isinstance(forgetting(R, per_task=True), np.ndarray)


def test_input_not_modified():
    R = R3.copy()
    for func in (average_accuracy, forgetting, backward_transfer):
        func(R)
    forward_transfer(R, np.zeros(3))
    np.testing.assert_array_equal(R, R3)


# -- validation -------------------------------------------------------------------------

ALL = [
    average_accuracy,
    forgetting,
    backward_transfer,
    lambda R: forward_transfer(R, np.zeros(np.shape(R)[0] if np.ndim(R) else 0)),
]


@pytest.mark.parametrize("func", ALL)
@pytest.mark.parametrize(
    "R, shape",
    [
        (np.zeros((2, 3)), "(2, 3)"),
        (np.zeros((3, 2)), "(3, 2)"),
        (np.zeros(3), "(3,)"),
        (np.zeros((2, 2, 2)), "(2, 2, 2)"),
        (np.float64(0.5), "()"),
        (np.zeros((0, 0)), "(0, 0)"),
    ],
)
def test_bad_shape_raises_naming_shape(func, R, shape):
    with pytest.raises(ValueError, match="shape.*" + re.escape(shape)):
        func(R)


@pytest.mark.parametrize("func", ALL[1:])
def test_single_task_raises_for_comparisons(func):
    with pytest.raises(ValueError, match=r"at least 2 tasks.*\(1, 1\)"):
        func(np.array([[0.5]]))


@pytest.mark.parametrize("func", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_raises(func, bad):
    R = R3.copy()
    R[1, 2] = bad
    with pytest.raises(ValueError, match=r"finite.*\(1, 2\)"):
        func(R)


def test_ragged_raises_value_error():
    with pytest.raises(ValueError, match="2-D numeric"):
        average_accuracy([[0.1, 0.2], [0.3]])


@pytest.mark.parametrize("upto", [-1, 3, 10])
def test_upto_out_of_range(upto):
    with pytest.raises(ValueError, match=r"upto must be in \[0, 2\]"):
        average_accuracy(R3, upto=upto)


@pytest.mark.parametrize("upto", [1.0, "1", True])
def test_upto_wrong_type(upto):
    with pytest.raises(TypeError, match="upto must be an int"):
        average_accuracy(R3, upto=upto)


@pytest.mark.parametrize("baseline", [[0.1, 0.2], [0.1, 0.2, 0.3, 0.4], [[0.1, 0.2, 0.3]]])
def test_forward_transfer_baseline_shape(baseline):
    with pytest.raises(ValueError, match=r"baseline must have shape \(3,\)"):
        forward_transfer(R3, baseline)


def test_forward_transfer_baseline_nan():
    with pytest.raises(ValueError, match=r"baseline must be finite.*\[2\]"):
        forward_transfer(R3, [0.0, 0.1, np.nan])


# -- evaluate_tasks with real classifiers -----------------------------------------------


@pytest.fixture(scope="module")
def digit_tasks():
    """Digits split into five class-incremental tasks: {0, 1}, {2, 3}, ..., {8, 9}."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    pairs = [(2 * k, 2 * k + 1) for k in range(5)]
    train = [(X_train[np.isin(y_train, p)], y_train[np.isin(y_train, p)]) for p in pairs]
    test = [(X_test[np.isin(y_test, p)], y_test[np.isin(y_test, p)]) for p in pairs]
    return train, test, (X_train, y_train)


def test_evaluate_tasks_matches_accuracy_score(digit_tasks):
    _, test, (X_train, y_train) = digit_tasks
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    row = evaluate_tasks(model, test)
    assert row.shape == (5,)
    assert row.dtype == np.float64
    expected = [accuracy_score(y, model.predict(X)) for X, y in test]
    np.testing.assert_array_equal(row, expected)
    assert (row > 0.8).all()


def test_evaluate_tasks_custom_metric(digit_tasks):
    _, test, (X_train, y_train) = digit_tasks
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)

    def macro_f1(y_true, y_pred):
        return f1_score(y_true, y_pred, average="macro")

    row = evaluate_tasks(model, test, metric=macro_f1)
    np.testing.assert_array_equal(row, [macro_f1(y, model.predict(X)) for X, y in test])


def test_evaluate_tasks_builds_matrix_over_sequential_training(digit_tasks):
    train, test, _ = digit_tasks
    model = SGDClassifier(random_state=0)
    classes = np.arange(10)
    rows = []
    for X, y in train:
        for _ in range(5):
            model.partial_fit(X, y, classes=classes)
        rows.append(evaluate_tasks(model, test))
    R = np.vstack(rows)
    assert R.shape == (5, 5)
    assert ((R >= 0) & (R <= 1)).all()
    # Each task is learned when it is trained on.
    assert (np.diag(R) > 0.5).all()
    # Class-incremental training without replay overwrites the earlier tasks: the
    # textbook case of catastrophic forgetting that these metrics exist to show.
    assert forgetting(R) > 0.5
    assert backward_transfer(R) < -0.5
    # The metrics agree with their definitions on a real matrix.
    assert average_accuracy(R) == pytest.approx(R[-1].mean())
    assert backward_transfer(R) == pytest.approx(np.mean(R[-1, :-1] - np.diag(R)[:-1]))
    assert forgetting(R) >= -backward_transfer(R) - 1e-12


def test_evaluate_tasks_unfitted_raises(digit_tasks):
    _, test, _ = digit_tasks
    with pytest.raises(NotFittedError):
        evaluate_tasks(LogisticRegression(), test)


def test_evaluate_tasks_empty_raises():
    with pytest.raises(ValueError, match="tasks is empty"):
        evaluate_tasks(LogisticRegression(), [])


def test_evaluate_tasks_bad_task_raises(digit_tasks):
    _, test, (X_train, y_train) = digit_tasks
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    with pytest.raises(ValueError, match=r"tasks\[1\] must be an \(X_test, y_test\) pair"):
        evaluate_tasks(model, [test[0], test[1][0]])
