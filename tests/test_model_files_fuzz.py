"""Seeded fuzzing of model files: random damage to a valid file must give a correct model
or a one-line ModelFileError from skocl.load, never another exception, never code from
the file, and never more than a bounded amount of memory.

Each test mutates one class of byte positions (zip local headers, each member's data,
the central directory, the end record), truncates, swaps members, or edits the JSON or
the inner archives and re-zips them with valid checksums so that the checks behind the
zip layer are reached. A failure names the seed and the mutation, so it can be replayed.
"""

import io
import json
import random
import sys
import zipfile

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

import skocl
import skocl.datasets
from skocl._drift import HISTORY
from skocl.exceptions import ModelFileError

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # zipfile's "Duplicate name"
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self"),
]

# The peak resident memory may rise this much during one load of the (25 KB) file.
MEMORY_BOUND_MIB = 64


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


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A StreamPipeline model file (all three members), its rows and its predictions."""
    rng = np.random.RandomState(0)
    X = rng.rand(60, 4)
    y = np.array(["ant", "bee", "cat"])[rng.randint(0, 3, 60)]
    clf = skocl.OnlineFineTuneClassifier(hidden_layer_sizes=(8,), random_state=0)
    pipe = skocl.make_stream_pipeline(StandardScaler(), clf).partial_fit(X, y)
    path = skocl.save(pipe, tmp_path_factory.mktemp("fuzz") / "valid.skocl")
    return path.read_bytes(), X, pipe.predict_proba(X)


class Outcome:
    """Loads mutated files and checks the invariant on each."""

    def __init__(self, valid, tmp_path, seed):
        self.raw, self.X, self.expected = valid
        self.dir, self.seed = tmp_path, seed
        self.marker = tmp_path / "code-ran"
        self.counts = {"refused": 0, "loaded": 0}

    def check(self, data: bytes, what: str, exact: bool) -> None:
        """``exact``: the members' contents are intact (only zip structure was touched),
        so a model that loads must predict exactly as the original."""
        path = self.dir / "mutated.skocl"
        path.write_bytes(data)
        result = {}

        def load():
            try:
                result["model"] = skocl.load(path)
            except ModelFileError as exc:
                result["error"] = exc
            except Exception as exc:  # the invariant is broken: report the case
                result["other"] = exc

        growth = peak_memory_growth(load)
        case = f"seed {self.seed}, {what}"
        if "other" in result:
            exc = result["other"]
            pytest.fail(f"{case}: {type(exc).__name__}: {exc}")
        assert growth < MEMORY_BOUND_MIB, f"{case}: peak memory rose {growth:.0f} MiB"
        assert not self.marker.exists(), f"{case}: code from the file ran"
        if "error" in result:
            message = str(result["error"])
            assert "\n" not in message and str(path) in message, f"{case}: {message!r}"
            self.counts["refused"] += 1
            return
        model = result["model"]
        proba = model.predict_proba(self.X)
        assert proba.shape == (len(self.X), len(model.classes_)), case
        if exact:
            np.testing.assert_array_equal(proba, self.expected, err_msg=case)
        self.counts["loaded"] += 1


def members_of(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def zipped(members) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return out.getvalue()


def regions(data: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges of the zip layout: each member's local header and data, the central
    directory and the end record."""
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            start = info.header_offset
            name_len, extra_len = (
                int.from_bytes(data[start + i : start + i + 2], "little") for i in (26, 28)
            )
            body = start + 30 + name_len + extra_len
            out[f"local header of {info.filename}"] = (start, body)
            out[f"data of {info.filename}"] = (body, body + info.compress_size)
        end = data.rindex(b"PK\x05\x06")
        out["central directory"] = (zf.start_dir, end)
        out["end record"] = (end, len(data))
    return out


def flipped(data: bytes, lo: int, hi: int, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    changes = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        at = rng.randrange(lo, hi)
        new = rng.choice([out[at] ^ (1 << rng.randrange(8)), rng.randrange(256), 0, 255])
        changes.append(f"byte {at}: {out[at]} -> {new}")
        out[at] = new
    return bytes(out), ", ".join(changes)


@pytest.mark.parametrize(
    "region",
    [
        "local header of state.pt",
        "data of state.pt",
        "local header of steps.skops",
        "data of steps.skops",
        "local header of meta.json",
        "data of meta.json",
        "central directory",
        "end record",
    ],
)
def test_damaged_bytes_in_every_region(valid, tmp_path, region):
    seed = sum(map(ord, region))
    rng, outcome = random.Random(seed), Outcome(valid, tmp_path, seed)
    lo, hi = regions(outcome.raw)[region]
    for _ in range(25):
        data, what = flipped(outcome.raw, lo, hi, rng)
        outcome.check(data, f"{region}, {what}", exact=True)
    assert outcome.counts["refused"] > 0


def test_truncations(valid, tmp_path):
    rng, outcome = random.Random(1), Outcome(valid, tmp_path, 1)
    size = len(outcome.raw)
    cuts = [0, 1, 4, 22, size - 22, size - 1] + rng.sample(range(size), 34)
    for cut in cuts:
        outcome.check(outcome.raw[:cut], f"truncated to {cut} bytes", exact=True)
    assert outcome.counts == {"refused": len(cuts), "loaded": 0}


def test_member_swaps_drops_and_duplicates(valid, tmp_path):
    outcome = Outcome(valid, tmp_path, 0)
    members = members_of(outcome.raw)
    names = [name for name, _ in members]
    contents = [data for _, data in members]
    cases = []
    rng = random.Random(0)
    for _ in range(8):
        order = rng.sample(names, len(names))
        cases.append((f"names {order} on contents of {names}", list(zip(order, contents))))
    for i, (name, _) in enumerate(members):
        cases.append((f"without {name}", members[:i] + members[i + 1 :]))
        cases.append((f"{name} twice", [*members, members[i]]))
        cases.append((f"{name} empty", [(n, b"" if n == name else d) for n, d in members]))
    cases.append(("reversed order", members[::-1]))
    cases.append(("an extra member", [*members, ("notes.txt", b"hi")]))
    for what, changed in cases:
        outcome.check(zipped(changed), what, exact=True)
    assert outcome.counts["loaded"] == 1  # the reversed order is a valid file


# Values a mutated meta.json may hold, dangerous ones included: names of callables with
# arguments that would leave a marker file if they were ever called.
def risky_values(marker):
    touch = {"command": f"touch {marker}"}
    return [
        None,
        True,
        False,
        0,
        -1,
        1,
        2,
        10**12,
        2**63,
        -(2**63),
        1e308,
        0.5,
        float("nan"),
        "",
        "x",
        "cpu",
        "meta",
        "cuda:7",
        "auto",
        "float16",
        "relu",
        "os.system",
        "builtins.eval",
        "skocl.cli.main",
        "river.drift.retrain.DriftRetrainingClassifier",
        [],
        [1, 2],
        [[1]],
        {},
        {"tuple": [10**6, 10**6]},
        {"tuple": "x"},
        {"labels": {"dtype": "<i8", "values": list(range(50))}},
        {"labels": {"dtype": "object", "values": ["a", 1, None]}},
        {"dtype": "<f4", "values": [1.5]},
        {"dtype": "|V8", "values": []},
        {"detector": "os.system", "params": touch},
        {"detector": "river.drift.adwin.ADWIN", "params": {"delta": -1, "clock": 10**12}},
        {"detector": "river.drift.retrain.DriftRetrainingClassifier", "params": {}},
        {"kind": "class", "class": "os.system"},
        {"kind": "class", "class": "skocl._persist.read_meta"},
        touch,
    ]


def json_paths(node, prefix=()):
    yield prefix
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in children:
        yield from json_paths(child, (*prefix, key))


def test_edited_metadata(valid, tmp_path):
    rng, outcome = random.Random(2), Outcome(valid, tmp_path, 2)
    members = dict(members_of(outcome.raw))
    meta = json.loads(members["meta.json"])
    paths = [p for p in json_paths(meta) if p]
    values = risky_values(outcome.marker)
    for _ in range(60):
        edited = json.loads(members["meta.json"])
        edits = []
        for _ in range(rng.choice([1, 1, 2])):
            path = rng.choice(paths)
            try:
                parent = edited
                for key in path[:-1]:
                    parent = parent[key]
                if rng.random() < 0.15 and isinstance(parent, dict):
                    del parent[path[-1]]
                    edits.append(f"del {path}")
                else:
                    value = rng.choice(values)
                    parent[path[-1]] = value
                    edits.append(f"{path} = {value!r}")
            except (KeyError, IndexError, TypeError):
                continue  # an earlier edit removed the path
        changed = {**members, "meta.json": json.dumps(edited).encode()}
        outcome.check(zipped(changed.items()), "; ".join(edits), exact=False)
    assert outcome.counts["refused"] > 0


def inner_regions(data: bytes):
    """(name, start, end) of each record's data inside a stored inner zip."""
    return [(what, lo, hi) for what, (lo, hi) in regions(data).items() if what.startswith("data")]


@pytest.mark.parametrize("member", ["state.pt", "steps.skops"])
def test_damaged_inner_archives(valid, tmp_path, member):
    """Bytes of the torch and skops archives changed and the outer zip rebuilt with valid
    checksums, so that torch's and skops' own readers meet the damage."""
    seed = sum(map(ord, member))
    rng, outcome = random.Random(seed), Outcome(valid, tmp_path, seed)
    members = dict(members_of(outcome.raw))
    inner = members[member]
    spots = [(f"{member} {what}", lo, hi) for what, lo, hi in inner_regions(inner)]
    spots.append((f"{member} anywhere", 0, len(inner)))
    for _ in range(40):
        what, lo, hi = rng.choice(spots)
        if hi <= lo:
            continue
        data, change = flipped(inner, lo, hi, rng)
        changed = {**members, member: data}
        outcome.check(zipped(changed.items()), f"{what}, {change}", exact=False)
    assert outcome.counts["refused"] > 0


class Payload:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_payloads_never_run(valid, tmp_path):
    import pickle

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    outcome = Outcome(valid, tmp_path, 0)
    members = dict(members_of(outcome.raw))
    payload = Payload(outcome.marker)
    buffer = io.BytesIO()
    torch.save({"module": payload}, buffer)
    shell = sio.dumps([("scaler", FunctionTransformer(open, kw_args={"file": "x"}))])
    cases = {
        "state.pt: torch file with a payload": {"state.pt": buffer.getvalue()},
        "state.pt: bare pickle with a payload": {"state.pt": pickle.dumps(payload)},
        "meta.json: a pickle": {"meta.json": pickle.dumps(payload)},
        "steps.skops: a pickle": {"steps.skops": pickle.dumps(payload)},
        "steps.skops: a builtin function as a step argument": {"steps.skops": shell},
    }
    for what, change in cases.items():
        outcome.check(zipped({**members, **change}.items()), what, exact=False)
    assert outcome.counts == {"refused": len(cases), "loaded": 0}


def test_claimed_drift_history_beyond_its_bytes_is_refused(tmp_path):
    """A file whose drift monitor claims more recent errors than it stores (or than the
    bounded history holds) is refused before anything is allocated for them."""
    pytest.importorskip("river")
    X, y, _ = skocl.datasets.make_drift_stream(600, 6, 2, drift_points=(), random_state=0)
    clf = skocl.OnlineFineTuneClassifier(max_iter=3, random_state=0).fit(X[:300], y[:300])
    clf.partial_fit(X[300:], y[300:])
    path = tmp_path / "m.skocl"
    skocl.save(clf, path)
    members = members_of(path.read_bytes())
    for claim in (10**12, HISTORY + 1):
        edited = []
        for name, data in members:
            if name == "state.pt":
                tensors = torch.load(io.BytesIO(data), weights_only=True)
                tensors["learner"]["drift"]["n_recent"] = claim
                buffer = io.BytesIO()
                torch.save(tensors, buffer)
                data = buffer.getvalue()
            edited.append((name, data))
        bad = tmp_path / f"bad{claim}.skocl"
        bad.write_bytes(zipped(edited))
        with pytest.raises(ModelFileError, match="recent errors"):
            skocl.load(bad)
    assert skocl.load(path).score(X, y) == clf.score(X, y)
