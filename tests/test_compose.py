"""StreamColumnTransformer, and categorical streams through a StreamPipeline."""

import warnings

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from skocl import OnlineFineTuneClassifier
from skocl.compose import StreamColumnTransformer
from skocl.exceptions import FrozenStepWarning
from skocl.pipeline import StreamPipeline
from skocl.preprocessing import OnlineOneHotEncoder

pd = pytest.importorskip("pandas")

CITIES = ["Oslo", "Rome", "Lima"]


def city_stream(n=1200, new_city_at=None, seed=0):
    """Rows of (temp, city) whose label is the city's; Lima only appears from row
    ``new_city_at`` (half-way by default) on, and temperatures drift upwards."""
    rng = np.random.default_rng(seed)
    new_city_at = n // 2 if new_city_at is None else new_city_at
    first = rng.integers(0, 2, size=new_city_at)
    later = rng.integers(0, 3, size=n - new_city_at)
    label = np.concatenate([first, later])
    temp = rng.normal(10, 3, size=n) + np.linspace(0, 20, n)
    frame = pd.DataFrame({"temp": temp, "city": np.array(CITIES, dtype=object)[label]})
    return frame, label


def chunks(frame, y, size=100):
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size], y[start : start + size]


def make_ct(**enc):
    return StreamColumnTransformer(
        [
            ("num", StandardScaler(), ["temp"]),
            ("cat", OnlineOneHotEncoder(**{"max_categories": 8, **enc}), ["city"]),
        ]
    )


def test_partial_fit_equals_each_part_by_hand():
    frame, y = city_stream()
    ct = make_ct()
    scaler, enc = StandardScaler(), OnlineOneHotEncoder(max_categories=8)
    for Xc, _ in chunks(frame, y):
        assert ct.partial_fit(Xc) is ct
        scaler.partial_fit(Xc[["temp"]])
        enc.partial_fit(Xc[["city"]])
    fitted = ct.named_transformers_
    np.testing.assert_array_equal(fitted["num"].mean_, scaler.mean_)
    np.testing.assert_array_equal(fitted["num"].var_, scaler.var_)
    assert fitted["num"].n_samples_seen_ == len(frame)
    assert sorted(fitted["cat"].categories_[0]) == sorted(CITIES)
    assert fitted["cat"].categories_[0][-1] == "Lima"  # the last to appear
    expected = np.hstack([scaler.transform(frame[["temp"]]), enc.transform(frame[["city"]])])
    np.testing.assert_array_equal(ct.transform(frame), expected)
    names = ct.get_feature_names_out().tolist()
    assert names[0] == "num__temp" and names[3] == "cat__city_Lima"


def test_a_stream_pipeline_learns_a_category_that_appears_late():
    frame, y = city_stream()
    online = StreamPipeline(
        [("prep", make_ct()), ("clf", OnlineFineTuneClassifier(random_state=0))]
    )
    # The ColumnTransformer users reach for: fitted on the first chunk, then frozen.
    frozen_ct = ColumnTransformer(
        [
            ("num", StandardScaler(), ["temp"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    ).fit(frame.iloc[:100])
    frozen = StreamPipeline(
        [("prep", frozen_ct), ("clf", OnlineFineTuneClassifier(random_state=0))]
    )
    with pytest.warns(
        FrozenStepWarning, match=r"'prep' \(ColumnTransformer\).*StreamColumnTransformer"
    ):
        for i, (Xc, yc) in enumerate(chunks(frame, y)):
            kw = {"classes": [0, 1, 2]} if i == 0 else {}
            online.partial_fit(Xc, yc, **kw)
            frozen.partial_fit(Xc, yc, **kw)

    test, y_test = city_stream(seed=1)
    lima = y_test == 2
    # Lima has its own column online; frozen, it encodes as no city at all, as would any
    # other city first seen later: such cities could not be told apart.
    assert online.score(test[lima], y_test[lima]) > 0.95
    frozen_cities = frozen_ct.transform(test[lima])[:, 1:]
    frozen_cities = frozen_cities.toarray() if hasattr(frozen_cities, "toarray") else frozen_cities
    assert not np.asarray(frozen_cities).any()
    online_cities = online.named_steps["prep"].transform(test[lima])[:, 1:]
    online_cities = online_cities.toarray() if hasattr(online_cities, "toarray") else online_cities
    assert np.asarray(online_cities).any(axis=1).all()
    assert online.named_steps["prep"].named_transformers_["num"].n_samples_seen_ == len(frame)
    # The frozen scaler still has the first chunk's mean; the online one follows the drift.
    assert frozen_ct.named_transformers_["num"].mean_[0] < 12
    assert online.named_steps["prep"].named_transformers_["num"].mean_[0] > 15


def test_a_part_without_partial_fit_warns_each_call():
    frame, y = city_stream(n=300)
    ct = StreamColumnTransformer(
        [
            ("num", StandardScaler(), ["temp"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("f", FunctionTransformer(), ["temp"]),  # stateless: no warning
        ]
    )
    ct.partial_fit(frame.iloc[:100])  # the first call is fit: every part learns
    with pytest.warns(FrozenStepWarning) as record:
        ct.partial_fit(frame.iloc[100:200])
    assert len(record) == 1
    assert "'cat' (OneHotEncoder)" in str(record[0].message)
    assert "OnlineOneHotEncoder" in str(record[0].message)


def test_a_failed_partial_fit_restores_every_part():
    frame, y = city_stream(n=300)
    ct = StreamColumnTransformer(
        [
            ("cat", OnlineOneHotEncoder(max_categories=8), ["city"]),
            ("num", StandardScaler(), ["temp"]),  # learns after the encoder
        ]
    )
    ct.partial_fit(frame.iloc[:50])
    cats = [list(c) for c in ct.named_transformers_["cat"].categories_]
    mean = ct.named_transformers_["num"].mean_.copy()
    bad = frame.iloc[50:100].copy()
    bad["city"] = "Paris"
    bad["temp"] = bad["temp"].astype(object)
    bad.iloc[3, 0] = "warm"  # the scaler refuses it after the encoder learned Paris
    with pytest.raises(ValueError):
        ct.partial_fit(bad)
    assert [list(c) for c in ct.named_transformers_["cat"].categories_] == cats
    np.testing.assert_array_equal(ct.named_transformers_["num"].mean_, mean)


def test_columns_are_checked_before_any_part_learns():
    frame, y = city_stream(n=200)
    ct = make_ct().partial_fit(frame.iloc[:100])
    n_seen = ct.named_transformers_["num"].n_samples_seen_
    renamed = frame.iloc[100:].rename(columns={"temp": "temperature"})
    with pytest.raises(ValueError, match="feature names"):
        ct.partial_fit(renamed)
    assert ct.named_transformers_["num"].n_samples_seen_ == n_seen


def test_remainder_and_drop_are_handled():
    frame, y = city_stream(n=200)
    frame["extra"] = 1.0
    ct = StreamColumnTransformer(
        [("cat", OnlineOneHotEncoder(max_categories=4), ["city"]), ("gone", "drop", ["extra"])],
        remainder=StandardScaler(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for Xc, _ in chunks(frame, y, size=50):
            ct.partial_fit(Xc)
    assert ct.named_transformers_["remainder"].n_samples_seen_ == 200
    assert ct.transform(frame).shape == (200, 4 + 1)


def test_stream_pipeline_warns_for_every_frozen_kind_but_not_stateless_steps():
    X = np.random.default_rng(0).normal(size=(60, 5))
    y = np.arange(60) % 2
    pca = PCA(2).fit(X)
    pipe = StreamPipeline(
        [
            ("f", FunctionTransformer()),
            ("pca", pca),
            ("clf", OnlineFineTuneClassifier(random_state=0)),
        ]
    )
    with pytest.warns(FrozenStepWarning) as record:
        pipe.partial_fit(X, y, classes=[0, 1])
    assert [str(r.message).split(" has")[0] for r in record] == ["Step 'pca' (PCA)"]
