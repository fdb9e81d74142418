"""A private random stream, and seeding that leaves torch's global generators as they were."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator

import numpy as np
import torch
from sklearn.utils import check_random_state


class Rng:
    """A private random stream kept as a state tensor, so it saves with the model and
    never touches torch's or numpy's global generators.

    ``generator`` lends a ``torch.Generator`` at the stream's position and keeps where
    it stopped; ``scope`` also seeds torch's global generator of a device from the
    stream (for dropout, which draws from it), restoring the global state after.
    """

    def __init__(self, seed: int) -> None:
        gen = torch.Generator()
        gen.manual_seed(seed)
        self.state = gen.get_state()

    @contextlib.contextmanager
    def generator(self) -> Iterator[torch.Generator]:
        gen = torch.Generator()
        gen.set_state(self.state)
        try:
            yield gen
        finally:
            self.state = gen.get_state()

    @contextlib.contextmanager
    def scope(self, device: torch.device, needed: bool = True) -> Iterator[torch.Generator]:
        with self.generator() as gen:
            if not needed:
                yield gen
                return
            with _seeded_globals(int(torch.randint(2**62, (1,), generator=gen)), device):
                yield gen


# torch's global generators are process-wide: threads that seed them (dask or joblib
# workers with several threads) take turns.
_GLOBAL_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def _seeded_globals(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global generator of ``device`` (only that one), restore it after."""
    cuda = device.type == "cuda"
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[device] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def seeded_build(seed: int, build, *args, **kwargs):
    """Call ``build`` (which initialises weights on the CPU) under a fixed seed, the
    global generators untouched."""
    with _seeded_globals(seed, torch.device("cpu")):
        return build(*args, **kwargs)


def draw_seed(random_state, bits: int = 62) -> int:
    """A seed from the ``random_state`` parameter; None draws from the OS, never from
    numpy's global generator."""
    if random_state is None:
        return secrets.randbits(bits)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
