"""Test-suite settings: one torch thread, so that test times do not depend on what else
runs on the machine (and subprocesses or joblib workers do not oversubscribe cores)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
