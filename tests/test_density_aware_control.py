"""The density-aware predictive's control (one weight for every input, ``fit_constant_weight``) and the fit of
both on a validation slice (``density_aware_against_control``), against brute force with scipy's densities."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from bayes_diglm.evaluation import density_aware_against_control, fit_constant_weight, fit_density_weighting
from bayes_diglm.evaluation.density_aware import CONSTANT_WEIGHTS


def _slice(rng, n, shift=0.0):
    log_px = rng.normal(size=n) - shift
    loc = rng.normal(size=n)
    # inputs of low density get targets far from the plain predictive: p(x) carries information
    y = loc + rng.normal(size=n) * np.where(log_px < -1.5, 6.0, 1.0)
    plain = torch.distributions.Normal(torch.from_numpy(loc), 1.0)
    prior = torch.distributions.StudentT(2.0, torch.zeros(n, dtype=torch.float64), 4.0)
    return log_px, plain, prior, y, loc


def test_the_constant_weight_is_the_brute_force_argmin_over_its_grid():
    rng = np.random.default_rng(0)
    _, plain, prior, y, loc = _slice(rng, 400)
    dens_plain = scipy.stats.norm.pdf(y, loc, 1.0)
    dens_prior = scipy.stats.t.pdf(y, 2.0, 0.0, 4.0)
    nll = [-np.mean(np.log(w * dens_plain + (1 - w) * dens_prior)) for w in CONSTANT_WEIGHTS]
    assert fit_constant_weight(plain, prior, y) == CONSTANT_WEIGHTS[int(np.argmin(nll))]
    assert fit_constant_weight(plain, prior, y, weights=[0.3]) == 0.3
    with pytest.raises(ValueError, match="weights"):
        fit_constant_weight(plain, prior, y, weights=[1.5])


def test_density_aware_against_control_fits_both_on_validation():
    rng = np.random.default_rng(1)
    train = rng.normal(size=2000)
    lv, pv, qv, yv, locv = _slice(rng, 600)
    lt, pt, qt, yt, _ = _slice(rng, 300, shift=0.5)
    fit = density_aware_against_control(train, (lv, pv, qv, yv), (lt, pt, qt))
    assert fit["weighting"] == fit_density_weighting(train, lv, pv, qv, yv)
    assert fit["constant_weight"] == fit_constant_weight(pv, qv, yv)
    np.testing.assert_array_equal(fit["aware"].weight, fit["weighting"].weight(lt))
    np.testing.assert_array_equal(fit["control"].weight, np.full(300, fit["constant_weight"]))
    nll = fit["val_nll"]
    assert nll["plain"] == pytest.approx(-np.mean(scipy.stats.norm.logpdf(yv, locv, 1.0)), rel=1e-12)
    # both fits include the plain predictive (power 0) or come close to it (w near 1): neither is worse
    assert nll["density_aware"] <= nll["plain"] + 1e-12
    assert nll["constant_weight"] <= nll["plain"] + 1e-4
    assert nll["density_aware"] < nll["constant_weight"]  # here p(x) tells which targets are far off
