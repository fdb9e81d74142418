"""Speed and memory of chunked CSV readers: pyarrow's streaming reader against pandas'.

Run from the repository root::

    python benchmarks/bench_readers.py                 # 1,000,000 rows (a few minutes)
    python benchmarks/bench_readers.py --rows 100000   # a quick look

The script writes a CSV of ``--rows`` rows with 20 float features (4 decimals) and an
int target, plain and gzip-compressed, then reads each file in chunks of 10,000 rows
with every contender, each in a fresh subprocess (so that memory figures do not mix):

* ``pyarrow typed (B)``: ``pyarrow.csv.open_csv`` with the column types fixed, block
  size B. This is what ``skocl._readers`` does on clean files.
* ``pyarrow text+cast``: every field read as bytes, then cast with
  ``pyarrow.compute``: the checked path ``skocl._readers`` takes after a bad value.
* ``pandas chunked``: ``pandas.read_csv(chunksize=10_000, dtype=...)``, C engine.
* ``skocl.read_csv`` (default, and forced down the checked path): end to end, with
  line numbers, validation and chunks of exactly 10,000 rows.

Every contender ends with the same thing: a float64 ``X`` of shape (n, 20) and an int64
``y`` per chunk (per parser block for the two raw pyarrow contenders). Figures: rows
per second (median of ``--repeat`` timed passes); the peak resident memory of the
first pass above the resident memory before it (Linux, where the kernel's peak mark can
be reset; a tiny file is read first, since pyarrow and pandas load parts of themselves
on first use); the peak of memory traced by :mod:`tracemalloc` (Python objects and numpy
arrays); the peak of pyarrow's memory pool. The markdown table is printed at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 10_000
N_FEATURES = 20
ROOT = Path(__file__).resolve().parents[1]

CONTENDERS = {
    "pyarrow typed (128 KiB)": ("arrow_typed", 1 << 17),
    "pyarrow typed (256 KiB)": ("arrow_typed", 1 << 18),
    "pyarrow typed (1 MiB)": ("arrow_typed", 1 << 20),
    "pyarrow typed (4 MiB)": ("arrow_typed", 1 << 22),
    "pyarrow text+cast (256 KiB)": ("arrow_text", 1 << 18),
    "pandas chunked": ("pandas", None),
    "skocl.read_csv": ("skocl", None),
    "skocl.read_csv (checked path)": ("skocl_checked", None),
}


def make_data(folder: Path, rows: int) -> tuple[Path, Path]:
    """Write the CSV files once; later runs with the same size reuse them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    plain = folder / f"bench_{rows}.csv"
    packed = folder / f"bench_{rows}.csv.gz"
    if plain.exists() and packed.exists():
        return plain, packed
    rng = np.random.default_rng(0)
    columns = {f"f{i}": np.round(rng.standard_normal(rows), 4) for i in range(N_FEATURES)}
    columns["y"] = rng.integers(0, 5, rows)
    table = pa.table(columns)
    pcsv.write_csv(table, plain)
    with pa.CompressedOutputStream(packed, "gzip") as out:
        pcsv.write_csv(table, out)
    return plain, packed


# ------------------------------------------------------------ one contender, in-process


def _load_readers():
    """The package skocl._readers without importing skocl (whose __init__ loads torch)."""
    folder = ROOT / "skocl" / "_readers"
    spec = importlib.util.spec_from_file_location(
        "bench_skocl_readers", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _reader(kind: str, block: int | None):
    """A function path -> iterator of (X, y) for the contender."""
    import numpy as np

    names = [f"f{i}" for i in range(N_FEATURES)]
    if kind in ("arrow_typed", "arrow_text"):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv

        if kind == "arrow_typed":
            types = {name: pa.float64() for name in names} | {"y": pa.int64()}
        else:
            types = {name: pa.binary() for name in names + ["y"]}

        def read(path):
            stream = pa.input_stream(str(path), compression="detect")
            reader = pcsv.open_csv(
                stream,
                read_options=pcsv.ReadOptions(use_threads=False, block_size=block),
                convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True),
            )
            for batch in reader:
                X = np.empty((batch.num_rows, N_FEATURES))
                for j in range(N_FEATURES):
                    column = batch.column(j)
                    if kind == "arrow_text":
                        column = pc.cast(
                            pc.utf8_trim_whitespace(column.cast(pa.string())), pa.float64()
                        )
                    X[:, j] = column.to_numpy(zero_copy_only=False)
                y = batch.column(N_FEATURES)
                if kind == "arrow_text":
                    y = pc.cast(y.cast(pa.string()), pa.int64())
                yield X, y.to_numpy()
            stream.close()

        return read
    if kind == "pandas":
        import pandas as pd

        dtypes = {name: np.float64 for name in names} | {"y": np.int64}

        def read(path):
            for frame in pd.read_csv(path, chunksize=CHUNK, dtype=dtypes):
                yield frame[names].to_numpy(np.float64), frame["y"].to_numpy()

        return read
    readers = _load_readers()
    # read_csv parses with the format in _csv._CSV; this process is the contender's own.
    readers._csv._CSV = readers._csv._CsvFormat(always_check=kind == "skocl_checked")

    def read(path):
        for chunk in readers.read_csv(path, target="y", chunksize=CHUNK):
            yield chunk.X, chunk.y

    return read


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) in MiB, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_one(kind: str, block: int | None, path: str, warmup: str, repeat: int) -> dict:
    import tracemalloc

    read = _reader(kind, None if block is None else int(block))
    for _ in read(warmup):
        pass
    pool = None
    if kind.startswith(("arrow", "skocl")):
        import pyarrow as pa

        pool = pa.default_memory_pool()
    # Memory first: later passes would find freed memory still held by the allocators.
    rss = None
    if _reset_peak_rss():
        rss0 = _rss_mib("VmRSS")
        for _ in read(path):
            pass
        rss = max(0.0, _rss_mib("VmHWM") - rss0)
    tracemalloc.start()
    for _ in read(path):
        pass
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    times = []
    n = 0
    for _ in range(repeat):
        start = time.perf_counter()
        n = sum(len(y) for _, y in read(path))
        times.append(time.perf_counter() - start)
    return {
        "rows": n,
        "rows_per_s": n / statistics.median(times),
        "rss_mib": rss,
        "traced_mib": traced,
        "arrow_pool_mib": None if pool is None else pool.max_memory() / 2**20,
    }


# ---------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--only", nargs="*", help="contenders to run (names as in the table)")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, block, path, warmup, repeat = args.one
        print(
            json.dumps(
                run_one(kind, None if block == "-" else int(block), path, warmup, int(repeat))
            )
        )
        return

    plain, packed = make_data(args.data_dir, args.rows)
    warmup = args.data_dir / "bench_warmup.csv"
    with open(plain) as src, open(warmup, "w") as dst:
        for _, line in zip(range(100), src, strict=False):
            dst.write(line)
    sizes = {plain: plain.stat().st_size / 2**20, packed: packed.stat().st_size / 2**20}
    results = []
    for name, (kind, block) in CONTENDERS.items():
        if args.only and name not in args.only:
            continue
        for path in (plain, packed):
            command = [
                sys.executable,
                __file__,
                "--one",
                kind,
                "-" if block is None else str(block),
                str(path),
                str(warmup),
                str(args.repeat),
            ]
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            figures |= {"reader": name, "file": "gzip" if path == packed else "plain"}
            results.append(figures)
            print(
                f"{name:32s} {figures['file']:5s} {figures['rows_per_s'] / 1e6:6.2f} Mrows/s",
                file=sys.stderr,
            )

    print(
        f"\n{args.rows:,} rows x {N_FEATURES} float features + int target, chunks of "
        f"{CHUNK:,}; plain {sizes[plain]:.0f} MiB, gzip {sizes[packed]:.0f} MiB\n"
    )
    print(
        "| reader | file | rows/s | peak RSS of a pass (MiB) | "
        "tracemalloc peak (MiB) | arrow pool peak (MiB) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        pool = "-" if r["arrow_pool_mib"] is None else f"{r['arrow_pool_mib']:.1f}"
        rss = "-" if r["rss_mib"] is None else f"{r['rss_mib']:.0f}"
        print(
            f"| {r['reader']} | {r['file']} | {r['rows_per_s']:,.0f} | {rss} | "
            f"{r['traced_mib']:.1f} | {pool} |"
        )


if __name__ == "__main__":
    main()
