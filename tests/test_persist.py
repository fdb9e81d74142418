"""skocl.save / skocl.load: round trips without pickle, and clear errors."""

import functools
import io
import json
import pickle
import sys
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification
from torch import nn

import skocl
from skocl import OnlineFineTuneClassifier
from skocl.exceptions import ModelFileError

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
    with pytest.raises(ModelFileError, match="objects other than tensors"):
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
    assert meta["format_version"] == 5  # one task (head rates); several tasks write 4
    assert _persist.FORMAT_VERSION == 5


def test_format_2_files_load_as_dense_models(data, tmp_path):
    X, y = data
    clf = OnlineFineTuneClassifier(max_iter=2, random_state=0).fit(X, y)
    path = skocl.save(clf, tmp_path / "m.skocl")
    with zipfile.ZipFile(path) as src:
        meta = json.loads(src.read("meta.json"))
        state = src.read("state.pt")
    meta["format_version"] = 2
    del meta["classifier"]["attrs"]["sparse_input"]
    old = tmp_path / "old.skocl"
    with zipfile.ZipFile(old, "w") as dst:
        dst.writestr("meta.json", json.dumps(meta))
        dst.writestr("state.pt", state)
    np.testing.assert_array_equal(skocl.load(old).predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize(
    "version, writer, advice",
    [(1, "0.1.0.dev0", "Load it with skocl 0.1.0.dev0"), (6, "9.0", "Upgrade skocl")],
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
        rf"{skocl.__version__} reads model format versions 2 to 5\. {advice}"
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


# --------------------------------------------------------------------------- malformed files
# Every malformed model file gives a one-line ModelFileError (a ValueError) from load,
# raised before anything large is allocated or any class named by the file is called.


def members_of(path):
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_members(path, members):
    """A zip of (name, bytes) pairs, in order; a name may repeat."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def edited(path, dst, meta=None, **replace):
    """A copy of the model file at ``path`` with meta.json edited by ``meta(dict)`` and
    members replaced (``state_pt=bytes``)."""
    members = members_of(path)
    if meta is not None:
        data = json.loads(members["meta.json"])
        meta(data)
        members["meta.json"] = json.dumps(data).encode()
    for name, data in replace.items():
        members[name.replace("_", ".")] = data
    return write_members(dst, list(members.items()))


def refused(path, match, **kwargs):
    with pytest.raises(ModelFileError, match=match) as info:
        skocl.load(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.fixture
def saved(data, tmp_path):
    X, y = data
    clf = OnlineFineTuneClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    return skocl.save(clf.fit(X, y), tmp_path / "m.skocl")


def torch_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Payload:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payloads_in_state_pt_never_run(saved, tmp_path):
    marker = tmp_path / "pwned"
    as_torch = torch_bytes({"module": Payload(marker)})
    refused(edited(saved, tmp_path / "a.skocl", state_pt=as_torch), "objects other than tensors")
    # A bare pickle (torch's legacy format) is not read at all.
    as_pickle = pickle.dumps({"module": Payload(marker)})
    refused(edited(saved, tmp_path / "b.skocl", state_pt=as_pickle), "state.pt is not a zip")
    assert not marker.exists()


@pytest.mark.parametrize("member", ["meta.json", "state.pt"])
def test_a_flipped_byte_is_refused(saved, tmp_path, member):
    raw = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo(member)
    # The member's data starts after its local header (30 bytes, name, extra field).
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0x55
    flipped = tmp_path / "flipped.skocl"
    flipped.write_bytes(bytes(raw))
    refused(flipped, f"{member} is damaged.*CRC")


def test_unknown_kind_and_malformed_metadata(saved, tmp_path):
    def kind(meta):
        meta["kind"] = "Pickle"

    refused(edited(saved, tmp_path / "a.skocl", kind), "unknown kind 'Pickle'")

    def no_params(meta):
        meta["classifier"]["params"] = [1, 2]

    refused(edited(saved, tmp_path / "b.skocl", no_params), "classifier.params is list")
    refused(edited(saved, tmp_path / "c.skocl", meta_json=b"[" * 100000), "not valid JSON")
    refused(edited(saved, tmp_path / "d.skocl", meta_json=b"\xff\xfe{"), "not valid JSON")

    def bad_param(meta):
        meta["classifier"]["params"]["activation"] = "os.system"

    refused(edited(saved, tmp_path / "e.skocl", bad_param), "parameters are not valid.*activation")

    def bad_state(meta):
        meta["classifier"]["attrs"]["loss_curve_"] = "x"
        del meta["classifier"]["attrs"]["n_iter_"]

    refused(edited(saved, tmp_path / "f.skocl", bad_state), "saved state does not fit")

    def device(name):
        def edit(meta):
            meta["classifier"]["params"]["device"] = name

        return edit

    refused(edited(saved, tmp_path / "g.skocl", device("meta")), "'meta' is not a device skocl")
    refused(edited(saved, tmp_path / "h.skocl", device("gpu")), "'gpu' is not a device")
    assert skocl.load(edited(saved, tmp_path / "i.skocl", device("cuda:99"))).device == "cpu"


def test_archive_structure_is_checked(saved, tmp_path):
    members = members_of(saved)
    twice = [*members.items(), ("meta.json", members["meta.json"])]
    refused(write_members(tmp_path / "a.skocl", twice), "two members named 'meta.json'")
    extra = [*members.items(), ("run.py", b"print(1)")]
    refused(write_members(tmp_path / "b.skocl", extra), "unexpected member 'run.py'")
    partial = [("meta.json", members["meta.json"])]
    refused(write_members(tmp_path / "c.skocl", partial), r"no state\.pt")
    refused(tmp_path, "is a directory")
    with pytest.raises(FileNotFoundError):
        skocl.load(tmp_path / "missing.skocl")
    truncated = tmp_path / "t.skocl"
    truncated.write_bytes(saved.read_bytes()[:-30])
    refused(truncated, "not a skocl model file")


def test_module_class_must_be_an_nn_module_class_of_that_name(saved, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(skocl._persist, "read_meta", lambda *a, **kw: calls.append(a))

    def function(meta):
        meta["classifier"]["module"] = {"kind": "class", "class": "skocl._persist.read_meta"}
        meta["classifier"]["params"]["module_kwargs"] = {"path": "x"}

    refused(edited(saved, tmp_path / "a.skocl", function), "names function, not a torch.nn")
    assert calls == []

    def alias(meta):
        meta["classifier"]["module"] = {"kind": "class", "class": "skocl.TrunkHeadNet"}

    refused(
        edited(saved, tmp_path / "b.skocl", alias), r"another name for skocl\._\w+\.TrunkHeadNet"
    )

    def not_module(meta):
        meta["classifier"]["module"] = {"kind": "class", "class": "skocl._persist.Path"}

    refused(edited(saved, tmp_path / "e.skocl", not_module), "the class Path, not a torch")

    def missing(meta):
        meta["classifier"]["module"] = {"kind": "class", "class": "skocl.nowhere.Net"}

    refused(edited(saved, tmp_path / "c.skocl", missing), "cannot be imported.*ModuleNotFound")

    def dunder(meta):
        meta["classifier"]["module"] = {"kind": "class", "class": "skocl.__builtins__.eval"}

    refused(edited(saved, tmp_path / "d.skocl", dunder), "cannot be imported")


def test_detector_must_be_a_river_detector_class_and_is_not_called_otherwise(
    data, tmp_path, monkeypatch
):
    river_drift = pytest.importorskip("river.drift")
    X, y = data
    clf = OnlineFineTuneClassifier(max_iter=2, drift_detector=river_drift.ADWIN(delta=0.01))
    path = skocl.save(clf.fit(X, y), tmp_path / "m.skocl")
    back = skocl.load(path)
    assert isinstance(back.drift_detector, river_drift.ADWIN)
    assert back.drift_detector.delta == 0.01

    calls = []
    monkeypatch.setattr(
        river_drift.DriftRetrainingClassifier, "__init__", lambda self, **kw: calls.append(kw)
    )
    marker = tmp_path / "pwned"

    def detector(name, params):
        def edit(meta):
            meta["classifier"]["params"]["drift_detector"] = {"detector": name, "params": params}

        return edit

    not_detector = detector("river.drift.retrain.DriftRetrainingClassifier", {"model": None})
    refused(edited(path, tmp_path / "a.skocl", not_detector), "not a river drift detector")
    shell = detector("os.system", {"command": f"touch {marker}"})
    refused(edited(path, tmp_path / "b.skocl", shell), "not trusted")
    refused(edited(path, tmp_path / "c.skocl", shell), "not a river drift", trusted=["os.system"])
    bad_params = detector("river.drift.adwin.ADWIN", {"delta": "x", "nope": 1})
    refused(edited(path, tmp_path / "d.skocl", bad_params), "parameters are not valid")
    assert calls == [] and not marker.exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        ({"n_features_in_": 10**12}, "n_features_in_=1000000000000, the first layer.* 6"),
        ({"n_features_in_": -1}, "n_features_in_=-1 is not a positive integer"),
        ({"n_features_in_": 6.0}, "n_features_in_=6.0 is not a positive integer"),
        ({"hidden_layer_sizes": {"tuple": [12000]}}, r"hidden_layer_sizes=\(12000,\), the"),
        ({"hidden_layer_sizes": {"tuple": [8, 8]}}, "declares 3 weight matrices, the file"),
        ({"hidden_layer_sizes": {"tuple": [-8]}}, "not a list of positive integers"),
        ({"classes_": 4}, "classes_ has 4 labels, the head gives 3 logits"),
        ({"classes_": [0, 1, 1]}, "classes_ repeats a label"),
        ({"feature_names_in_": ["a"]}, "feature_names_in_ is not a list of 6"),
    ],
)
def test_declared_sizes_are_checked_against_the_stored_weights(saved, tmp_path, edit, match):
    def apply(meta):
        clf = meta["classifier"]
        for key, value in edit.items():
            if key == "hidden_layer_sizes":
                clf["params"][key] = value
            elif key == "classes_":
                values = list(range(value)) if isinstance(value, int) else value
                clf["attrs"][key] = {"dtype": "<i8", "values": values}
            else:
                clf["attrs"][key] = value

    refused(edited(saved, tmp_path / "bad.skocl", apply), match)


def test_user_module_sizes_have_generic_bounds(data, tmp_path):
    X, y = data
    clf = OnlineFineTuneClassifier(Net, module_kwargs={"n_in": 6}, max_iter=2, random_state=0)
    path = skocl.save(clf.fit(X, y), tmp_path / "m.skocl")
    trust = [f"{Net.__module__}.Net"]

    def wide(meta):
        meta["classifier"]["attrs"]["n_features_in_"] = 10**12

    refused(edited(path, tmp_path / "a.skocl", wide), "more than the network's 83", trusted=trust)

    def many(meta):
        meta["classifier"]["attrs"]["classes_"] = {"dtype": "<i8", "values": list(range(100))}

    refused(edited(path, tmp_path / "b.skocl", many), "100 labels, more than", trusted=trust)

    def huge(meta):  # 3.2 GB of weights if it were built
        meta["classifier"]["params"]["module_kwargs"] = {"n_in": 10**8}

    refused(
        edited(path, tmp_path / "c.skocl", huge),
        "build a Net of 800000035 values; the file stores 83",
        trusted=trust,
    )


def test_tensor_views_larger_than_their_data_are_refused(saved, tmp_path):
    state = torch.load(io.BytesIO(members_of(saved)["state.pt"]), weights_only=True)
    state["rng"] = torch.zeros(1, dtype=torch.uint8).expand(10**12)
    refused(edited(saved, tmp_path / "a.skocl", state_pt=torch_bytes(state)), "not a plain dense")
    refused(edited(saved, tmp_path / "b.skocl", state_pt=torch_bytes([1])), "network's weights")


def deflated_member(zf, name, head: bytes, size: int):
    """Write ``head`` padded with spaces to ``size`` bytes, deflated (about 1000 to 1)."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = 1
    with zf.open(info, "w", force_zip64=True) as out:
        out.write(head)
        block = b" " * 2**20
        for _ in range((size - len(head)) // len(block)):
            out.write(block)


def peak_memory_growth(call):
    """How far the resident memory's peak rises during ``call()``, in MiB (Linux: the
    peak is reset through /proc/self/clear_refs)."""

    def peak():
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM"))
        return int(line.split()[1]) / 1024

    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = peak()
    call()
    return peak() - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_sizes_are_checked_before_allocation_in_bounded_memory(saved, tmp_path):
    members = members_of(saved)
    meta = json.loads(members["meta.json"])
    bomb = tmp_path / "bomb.skocl"  # meta.json: 100 MiB, deflated to about 400 KB
    with zipfile.ZipFile(bomb, "w") as zf:
        deflated_member(zf, "meta.json", json.dumps(meta).encode(), 100 * 2**20)
        zf.writestr("state.pt", members["state.pt"])
    assert bomb.stat().st_size < 1_000_000
    inner = io.BytesIO()  # state.pt: a torch archive whose record inflates to 100 MiB
    with zipfile.ZipFile(inner, "w") as zf:
        deflated_member(zf, "archive/data/0", b"", 100 * 2**20)
    inner_bomb = edited(saved, tmp_path / "inner.skocl", state_pt=inner.getvalue())

    def huge(meta):  # 576 MB of weights if it were built
        meta["classifier"]["params"]["hidden_layer_sizes"] = {"tuple": [12000, 12000]}

    def wide(meta):
        meta["classifier"]["attrs"]["n_features_in_"] = 10**12

    files = [bomb, inner_bomb, edited(saved, tmp_path / "h.skocl", huge)]
    files.append(edited(saved, tmp_path / "w.skocl", wide))
    matches = [
        r"meta.json would inflate to 10\d{7} bytes, more than the 67108864 skocl allows",
        r"state.pt would inflate to 10\d{7} bytes from 4\d{5} bytes",
        r"hidden_layer_sizes=\(12000, 12000\)",
        "n_features_in_=1000000000000",
    ]
    for path, match in zip(files, matches):
        assert peak_memory_growth(functools.partial(refused, path, match)) < 20


def test_skocl_steps_load_without_trusted(tmp_path):
    """skocl's own online steps are trusted as skops trusts scikit-learn's: a categorical
    StreamPipeline loads without ``trusted`` and keeps learning new categories exactly as
    the model that was saved."""
    from sklearn.preprocessing import StandardScaler

    from skocl.compose import StreamColumnTransformer
    from skocl.preprocessing import OnlineOneHotEncoder

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=200), "c": rng.choice(["x", "y", "z"], 200)})
    y = (df.a > 0).astype(int)
    columns = StreamColumnTransformer(
        [("num", StandardScaler(), ["a"]), ("cat", OnlineOneHotEncoder(), ["c"])]
    )
    model = skocl.make_stream_pipeline(
        columns, OnlineFineTuneClassifier(max_iter=5, random_state=0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(df, y, classes=[0, 1])
    back = skocl.load(skocl.save(model, tmp_path / "m.skocl"))
    np.testing.assert_array_equal(back.predict_proba(df), model.predict_proba(df))
    later = pd.DataFrame({"a": rng.normal(size=50), "c": rng.choice(["x", "w"], 50)})
    for m in (model, back):
        m.partial_fit(later, (later.a > 0).astype(int))
    np.testing.assert_array_equal(back.predict_proba(later), model.predict_proba(later))
    assert "w" in back[0].transformers_[1][1].categories_[0]
