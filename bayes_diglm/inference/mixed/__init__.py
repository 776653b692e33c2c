"""Mixed-effects heads: crossed or nested random effects per group on top of the features (paper appendix B.1).

:class:`MixedEffectsRegression` (Gaussian, exact REML/ML as lme4's ``lmer``), :class:`MixedEffectsClassifier`
(logit), :class:`MixedEffectsPoisson` (log link) and :class:`MixedEffectsGLM` (any family of the registry with one
linear predictor: binomial with trials, negative binomial, Gamma, ...), by the Laplace approximation of ``glmer``
(``nAGQ=1``);
random effects specified by :class:`RandomEffect`; a fit whose covariance is singular warns
:class:`SingularFitWarning`; :class:`MixedSufficientStats` streams large data sets.
"""

from .design import MixedSufficientStats, RandomEffect
from .gaussian import MixedEffectsRegression
from .glmm import MixedEffectsClassifier, MixedEffectsGLM, MixedEffectsPoisson
from .optimise import SingularFitWarning

__all__ = ["MixedEffectsClassifier", "MixedEffectsGLM", "MixedEffectsPoisson", "MixedEffectsRegression",
           "MixedSufficientStats", "RandomEffect", "SingularFitWarning"]
