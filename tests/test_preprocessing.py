"""OnlineOneHotEncoder: categories learned chunk by chunk into a fixed width."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skocl.preprocessing import OnlineOneHotEncoder


def col(*values):
    return np.array(values, dtype=object).reshape(-1, 1)


@parametrize_with_checks([OnlineOneHotEncoder(), OnlineOneHotEncoder(max_categories=2)])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_a_category_first_seen_late_gets_its_own_column():
    enc = OnlineOneHotEncoder(max_categories=4).partial_fit(col("a", "b", "a"))
    before = enc.transform(col("a", "b", "c"))
    np.testing.assert_array_equal(before, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    enc.partial_fit(col("c"))
    after = enc.transform(col("a", "b", "c"))
    np.testing.assert_array_equal(after, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    assert after.shape[1] == before.shape[1]  # the width never changes
    assert list(enc.categories_[0]) == ["a", "b", "c"]
    assert enc.n_samples_seen_ == 4


def test_a_full_column_sends_new_categories_to_other():
    enc = OnlineOneHotEncoder(max_categories=3)
    enc.partial_fit(col("a", "b")).partial_fit(col("c", "d", "c"))
    assert list(enc.categories_[0]) == ["a", "b"]
    assert enc.n_other_.tolist() == [3]  # c, d, c
    np.testing.assert_array_equal(
        enc.transform(col("c", "z", "a")), [[0, 0, 1], [0, 0, 1], [1, 0, 0]]
    )
    assert enc.get_feature_names_out(["city"]).tolist() == ["city_a", "city_b", "city_other"]


def test_partial_fit_over_chunks_equals_fit_on_all_rows():
    rng = np.random.default_rng(0)
    X = rng.choice(np.array(["x", "y", "z", "w", None], dtype=object), size=(200, 3))
    streamed = OnlineOneHotEncoder(max_categories=8)
    for start in range(0, 200, 30):
        streamed.partial_fit(X[start : start + 30])
    whole = OnlineOneHotEncoder(max_categories=8).fit(X)
    for a, b in zip(streamed.categories_, whole.categories_, strict=True):
        assert list(a) == list(b)
    np.testing.assert_array_equal(streamed.transform(X), whole.transform(X))
    # Each row has exactly one hot column per input column.
    np.testing.assert_array_equal(whole.transform(X).sum(axis=1), np.full(200, 3.0))


def test_missing_values_are_one_category():
    enc = OnlineOneHotEncoder(max_categories=4).fit(col("a", None, np.nan, float("nan")))
    assert list(enc.categories_[0]) == ["a", None]
    np.testing.assert_array_equal(enc.transform(col(np.nan, None)), [[0, 1, 0, 0]] * 2)


def test_fit_forgets_earlier_calls():
    enc = OnlineOneHotEncoder(max_categories=3).partial_fit(col("a", "b", "c"))
    enc.fit(col("q"))
    assert list(enc.categories_[0]) == ["q"]
    assert enc.n_other_.tolist() == [0] and enc.n_samples_seen_ == 1


def test_a_chunk_with_other_columns_is_refused_and_changes_nothing():
    enc = OnlineOneHotEncoder().partial_fit(np.array([["a", "b"]], dtype=object))
    with pytest.raises(ValueError, match="2 features"):
        enc.partial_fit(np.array([["c", "d", "e"]], dtype=object))
    assert [list(c) for c in enc.categories_] == [["a"], ["b"]]
    assert enc.n_samples_seen_ == 1


def test_dataframe_columns_name_the_outputs():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"city": ["Oslo", "Rome"], "size": ["S", "L"]})
    enc = OnlineOneHotEncoder(max_categories=3).fit(frame)
    assert enc.get_feature_names_out().tolist() == [
        "city_Oslo", "city_Rome", "city_other", "size_S", "size_L", "size_other",
    ]  # fmt: skip
    assert (
        OnlineOneHotEncoder(max_categories=4).fit(frame[["city"]]).get_feature_names_out()[2]
        == "city_free2"
    )


@pytest.mark.parametrize("bad", [1, 0, 2.5, "3"])
def test_max_categories_is_validated(bad):
    with pytest.raises(ValueError, match="max_categories"):
        OnlineOneHotEncoder(max_categories=bad).fit(col("a"))


def test_skops_round_trip_keeps_the_categories():
    sio = pytest.importorskip("skops.io")
    X = np.array([["a", None], [np.nan, 3], [1.5, "x"]], dtype=object)
    enc = OnlineOneHotEncoder(max_categories=5).fit(X)
    raw = sio.dumps(enc)
    assert sio.get_untrusted_types(data=raw) == ["skocl.preprocessing.OnlineOneHotEncoder"]
    back = sio.loads(raw, trusted=["skocl.preprocessing.OnlineOneHotEncoder"])
    np.testing.assert_array_equal(back.transform(X), enc.transform(X))
    back.partial_fit(np.array([["new", "y"]], dtype=object))  # and it goes on learning
    assert back.categories_[0][-1] == "new"
