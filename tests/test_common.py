"""scikit-learn's estimator checks over every public estimator."""

import numpy as np
import pytest
from sklearn.utils._testing import assert_allclose
from sklearn.utils.estimator_checks import estimator_checks_generator

from skocl import OnlineFineTuneClassifier

# sklearn compares fitting with integer sample weights against fitting on repeated rows
# at rtol=1e-7. With float32 weights the two differ by float32 rounding (one ulp,
# ~1e-7), so the equivalence is checked by sklearn at float64 below, and at float32 by
# test_sample_weight_equivalence_float32 with a float32 tolerance.
FLOAT64_ONLY = {
    "check_sample_weight_equivalence_on_dense_data",
    "check_sample_weight_equivalence_on_sparse_data",
}


def _checks():
    for dtype in ("float32", "float64"):
        est = OnlineFineTuneClassifier(dtype=dtype, random_state=0)
        for estimator, check in estimator_checks_generator(est, legacy=True, mark=None):
            name = getattr(check, "__name__", None) or check.func.__name__
            if dtype == "float32" and name in FLOAT64_ONLY:
                continue
            yield pytest.param(estimator, check, id=f"{dtype}-{name}")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, check", list(_checks()))
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("sparse", [False, True])
def test_sample_weight_equivalence_float32(sparse):
    import scipy.sparse as sp

    rng = np.random.RandomState(42)
    X = rng.rand(15, 30)
    y = rng.randint(0, 3, size=15)
    sw = rng.randint(0, 5, size=15)
    X_rep, y_rep = X.repeat(sw, axis=0), y.repeat(sw)
    if sparse:
        X, X_rep = sp.csr_matrix(X), sp.csr_matrix(X_rep)
    kw = dict(max_iter=50, random_state=0)
    weighted = OnlineFineTuneClassifier(**kw).fit(X, y, sample_weight=sw)
    repeated = OnlineFineTuneClassifier(**kw).fit(X_rep, y_rep)
    assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-5, atol=1e-6)
