"""skocl.save / skocl.load: round trips without pickle, and clear errors."""

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification
from torch import nn

import skocl
from skocl import OnlineFineTuneClassifier

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def data():
    X, y = make_classification(
        n_samples=150, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    return X, y


def assert_same_state(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_predicts_and_keeps_learning_identically(data, tmp_path):
    X, y = data
    labels = np.array(["ant", "bee", "cat"])[y]
    clf = OnlineFineTuneClassifier(max_iter=10, dropout=0.1, random_state=0).fit(
        X[:100], labels[:100]
    )
    clf.partial_fit(X[100:120], labels[100:120])
    path = skocl.save(clf, tmp_path / "m.skocl")
    back = skocl.load(path)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    assert back.get_params() == clf.get_params()
    assert back.loss_curve_ == clf.loss_curve_ and back.n_samples_seen_ == clf.n_samples_seen_
    # Optimizer moments and the random stream were saved: learning goes on identically.
    for model in (clf, back):
        model.partial_fit(X[120:150], labels[120:150])
    assert_same_state(clf, back)


def test_feature_names_and_growing_label_set_survive(data, tmp_path):
    X, y = data
    df = pd.DataFrame(X, columns=list("abcdef"))
    clf = OnlineFineTuneClassifier(max_iter=5, random_state=0).fit(df[y < 2], y[y < 2])
    back = skocl.load(skocl.save(clf, tmp_path / "m.skocl"))
    np.testing.assert_array_equal(back.feature_names_in_, list("abcdef"))
    back.partial_fit(df, y)  # the label set was not fixed: class 2 is added
    np.testing.assert_array_equal(back.classes_, [0, 1, 2])


class Net(nn.Module):
    def __init__(self, n_in=6, n_out=3):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(n_in, 8), nn.ReLU())
        self.head = nn.Linear(8, n_out)


def test_user_modules_need_the_module_or_trust(data, tmp_path):
    X, y = data
    clf = OnlineFineTuneClassifier(Net(), max_iter=5, random_state=0).fit(X, y)
    path = skocl.save(clf, tmp_path / "inst.skocl")
    with pytest.raises(ValueError, match="pass an instance"):
        skocl.load(path)
    back = skocl.load(path, module=Net())
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))

    by_class = OnlineFineTuneClassifier(Net, max_iter=5, random_state=0).fit(X, y)
    path = skocl.save(by_class, tmp_path / "cls.skocl")
    name = f"{Net.__module__}.Net"
    with pytest.raises(ValueError, match="not trusted"):
        skocl.load(path)
    back = skocl.load(path, trusted=[name])
    np.testing.assert_array_equal(back.predict_proba(X), by_class.predict_proba(X))
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        skocl.load(path, module=Net(n_out=4))


def test_loading_never_runs_code_from_the_file(data, tmp_path):
    X, y = data
    path = skocl.save(OnlineFineTuneClassifier(max_iter=2).fit(X, y), tmp_path / "m.skocl")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    torch.save({"module": Evil()}, buf)
    evil = tmp_path / "evil.skocl"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(evil, "w") as dst:
        dst.writestr("meta.json", src.read("meta.json"))
        dst.writestr("state.pt", buf.getvalue())
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        skocl.load(evil)
    assert not marker.exists()


def test_wrong_files_give_clear_errors(data, tmp_path):
    X, y = data
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a skocl model file"):
        skocl.load(tmp_path / "plain.txt")
    with pytest.raises(TypeError, match="takes an OnlineFineTuneClassifier"):
        skocl.save(object(), tmp_path / "x.skocl")
    with pytest.raises(Exception, match="(?i)not fitted"):
        skocl.save(OnlineFineTuneClassifier(), tmp_path / "x.skocl")


def test_version_lives_in_one_module_and_is_saved(data, tmp_path):
    from skocl import _persist, _version

    assert skocl.__version__ == _version.__version__
    X, y = data
    path = skocl.save(OnlineFineTuneClassifier(max_iter=2).fit(X, y), tmp_path / "m.skocl")
    meta = skocl._persist.read_meta(path)
    assert meta["skocl_version"] == _version.__version__
    assert meta["format_version"] == _persist.FORMAT_VERSION == 2


@pytest.mark.parametrize(
    "version, writer, advice",
    [(1, "0.1.0.dev0", "Load it with skocl 0.1.0.dev0"), (3, "9.0", "Upgrade skocl")],
)
def test_older_and_newer_formats_are_refused_naming_both_versions(
    data, tmp_path, version, writer, advice
):
    X, y = data
    path = skocl.save(OnlineFineTuneClassifier(max_iter=2).fit(X, y), tmp_path / "m.skocl")
    with zipfile.ZipFile(path) as src:
        meta = json.loads(src.read("meta.json"))
        state = src.read("state.pt")
    meta["format_version"] = version
    meta["skocl_version"] = writer
    other = tmp_path / "other.skocl"
    with zipfile.ZipFile(other, "w") as dst:
        dst.writestr("meta.json", json.dumps(meta))
        dst.writestr("state.pt", state)
    expected = (
        rf"holds model format version {version} \(written by skocl {writer}\); this skocl "
        rf"{skocl.__version__} reads model format version 2 only\. {advice}"
    )
    for read in (skocl.load, skocl._persist.read_meta):
        with pytest.raises(ValueError, match=expected):
            read(other)


def test_save_is_atomic(data, tmp_path):
    X, y = data
    clf = OnlineFineTuneClassifier(max_iter=2).fit(X, y)
    path = skocl.save(clf, tmp_path / "m.skocl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.skocl"]
    assert skocl.load(path).n_features_in_ == 6


def shift(X):
    return X + 1.0


def test_stream_pipeline_round_trip_and_untrusted_steps(data, tmp_path):
    from sklearn.decomposition import IncrementalPCA
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    X, y = data
    pipe = skocl.make_stream_pipeline(
        StandardScaler(), IncrementalPCA(n_components=4), OnlineFineTuneClassifier(random_state=0)
    )
    for lo in range(0, 150, 30):
        pipe.partial_fit(X[lo : lo + 30], y[lo : lo + 30])
    back = skocl.load(skocl.save(pipe, tmp_path / "p.skocl"))
    assert isinstance(back, skocl.StreamPipeline)
    assert [n for n, _ in back.steps] == [n for n, _ in pipe.steps]
    np.testing.assert_array_equal(back.predict_proba(X), pipe.predict_proba(X))
    for model in (pipe, back):
        model.partial_fit(X[:30], y[:30])
    np.testing.assert_array_equal(back[0].mean_, pipe[0].mean_)
    assert_same_state(back[-1], pipe[-1])

    odd = skocl.make_stream_pipeline(
        FunctionTransformer(shift), OnlineFineTuneClassifier(max_iter=2, random_state=0)
    ).fit(X, y)
    path = skocl.save(odd, tmp_path / "odd.skocl")
    with pytest.raises(ValueError, match="not trusted"):
        skocl.load(path)
    name = f"{__name__}.shift"
    np.testing.assert_array_equal(
        skocl.load(path, trusted=[name]).predict_proba(X), odd.predict_proba(X)
    )
