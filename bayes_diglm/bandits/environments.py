"""Contextual bandit environments: the wheel bandit and classification data sets (digits, Fashion-MNIST, Statlog
shuttle) played as bandits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_positive

__all__ = [
    "BanditData",
    "WHEEL_DELTAS",
    "wheel_bandit",
    "classification_bandit",
    "digits_bandit",
    "fashion_bandit",
    "statlog_bandit",
]

# The exploration parameters of Riquelme, Tucker and Snoek (2018), table 2.
WHEEL_DELTAS = (0.5, 0.7, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class BanditData:
    """One pre-drawn bandit episode: a context per step, and every arm's noisy and expected reward.

    Attributes
    ----------
    contexts : ndarray (T, d)
        The context shown at each step (float64).
    rewards : ndarray (T, k)
        The reward each arm would pay at each step (what the agent observes for the arm it pulls).
    mean_rewards : ndarray (T, k)
        Expected rewards; regret is computed from these, never from the noisy draws.
    name : str
        Short description, e.g. ``"wheel(delta=0.9)"``.
    """

    contexts: np.ndarray
    rewards: np.ndarray
    mean_rewards: np.ndarray
    name: str = "bandit"

    def __post_init__(self) -> None:
        T = self.contexts.shape[0]
        if self.contexts.ndim != 2 or self.rewards.shape != self.mean_rewards.shape or self.rewards.shape[0] != T:
            raise ValueError(
                f"shapes do not agree: contexts {self.contexts.shape}, rewards {self.rewards.shape}, "
                f"mean_rewards {self.mean_rewards.shape}"
            )

    @property
    def num_steps(self) -> int:
        return int(self.contexts.shape[0])

    @property
    def num_arms(self) -> int:
        return int(self.rewards.shape[1])

    @property
    def context_dim(self) -> int:
        return int(self.contexts.shape[1])

    @property
    def optimal_arms(self) -> np.ndarray:
        """The arm with the highest expected reward at each step."""
        return self.mean_rewards.argmax(axis=1)

    def regret(self, arms) -> np.ndarray:
        """Per-step expected regret ``max_a mu_t(a) - mu_t(a_t)`` of the chosen ``arms`` (length ``T``)."""
        arms = np.asarray(arms)
        if arms.shape != (self.num_steps,) or not np.issubdtype(arms.dtype, np.integer):
            raise ValueError(f"arms must be {self.num_steps} integer arm indices, got {arms.dtype} {arms.shape}")
        steps = np.arange(self.num_steps)
        return self.mean_rewards.max(axis=1) - self.mean_rewards[steps, arms]

    def realised_regret(self, arms) -> np.ndarray:
        """Per-step *realised* regret ``r_t(a*_t) - r_t(a_t)``: the noisy reward the optimal arm ``a*_t`` paid
        at step ``t`` minus the one the chosen arm paid (Riquelme et al.'s released code counts this)."""
        self.regret(arms)  # checks arms
        steps = np.arange(self.num_steps)
        return self.rewards[steps, self.optimal_arms] - self.rewards[steps, np.asarray(arms)]


def _check_steps(num_steps) -> int:
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    return int(num_steps)


def wheel_bandit(
    num_steps: int,
    delta: float,
    *,
    seed: int | np.random.Generator | None = 0,
    mean_inner: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.2),
    mean_outer: float = 50.0,
    std: float = 0.01,
    std_outer: float | None = None,
) -> BanditData:
    r"""The wheel bandit of Riquelme et al. (2018): 5 arms, contexts uniform on the unit disk.

    Arm ``a`` pays :math:`N(\mu_a, \mathrm{std}^2)` with :math:`\mu = (1, 1, 1, 1, 1.2)`; when
    :math:`\|x\| \ge \delta` the arm of the context's quadrant pays :math:`N(50, \mathrm{std\_outer}^2)` instead
    (``std_outer`` defaults to ``std``; their released ``example_main.py`` has ``std = 0.05``, ``std_outer = 0.01``)
    (:math:`x_0>0, x_1>0 \to 0`; :math:`x_0>0, x_1<0 \to 1`; :math:`x_0<0, x_1>0 \to 2`; :math:`x_0<0, x_1<0
    \to 3`). The outer region has probability :math:`1 - \delta^2`; inside it arm 4 is optimal. Contexts are
    drawn exactly (radius :math:`\sqrt{U}`, uniform angle) rather than by rejection.

    Examples
    --------
    >>> data = wheel_bandit(1000, 0.5, seed=0)
    >>> data.contexts.shape, data.num_arms
    ((1000, 2), 5)
    >>> bool(np.all(data.optimal_arms[np.linalg.norm(data.contexts, axis=1) < 0.5] == 4))
    True
    """
    T = _check_steps(num_steps)
    if not (isinstance(delta, (int, float, np.floating)) and 0.0 <= float(delta) <= 1.0):
        raise ValueError(f"delta must be in [0, 1], got {delta!r}")
    check_positive(std, "std", allow_zero=True)
    std_outer = std if std_outer is None else check_positive(std_outer, "std_outer", allow_zero=True)
    mean_inner = np.asarray(mean_inner, dtype=np.float64)
    if mean_inner.shape != (5,):
        raise ValueError(f"mean_inner must hold 5 values (one per arm), got shape {mean_inner.shape}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    radius = np.sqrt(rng.uniform(size=T))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=T)
    contexts = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    means = np.tile(mean_inner, (T, 1))
    outer = radius >= delta
    quadrant = 2 * (contexts[:, 0] < 0) + (contexts[:, 1] < 0)
    means[outer, quadrant[outer]] = float(mean_outer)
    noise_sd = np.full(means.shape, float(std))
    noise_sd[outer, quadrant[outer]] = std_outer
    rewards = means + noise_sd * rng.standard_normal(means.shape)
    return BanditData(contexts, rewards, means, f"wheel(delta={float(delta):g})")


def classification_bandit(X, y, num_steps: int | None = None, *, seed: int = 0, name: str = "classification"):
    """A classification data set played as a bandit: one arm per class, reward 1 for the true class, else 0.

    Rows are shown in a random order (``seed``); with ``num_steps`` larger than the data, the data are
    shown again in fresh random orders. Rewards are deterministic, so ``mean_rewards == rewards``.
    Standardise ``X`` before (see :func:`digits_bandit`).

    Examples
    --------
    >>> X = np.eye(3)
    >>> data = classification_bandit(X, np.array([0, 1, 2]), seed=0)
    >>> bool(np.all(data.optimal_arms == data.contexts.argmax(axis=1)))
    True
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError("y must hold non-negative integer class labels")
    T = X.shape[0] if num_steps is None else _check_steps(num_steps)
    k = int(y.max()) + 1
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(X.shape[0]) for _ in range(-(-T // X.shape[0]))])[:T]
    onehot = np.zeros((T, k))
    onehot[np.arange(T), y[order]] = 1.0
    return BanditData(X[order], onehot, onehot.copy(), name)


def _standardise(X: np.ndarray, reference: np.ndarray) -> np.ndarray:
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    return (X - mean) / np.where(std > 0, std, 1.0)


def digits_bandit(num_steps: int | None = None, *, seed: int = 0) -> BanditData:
    """scikit-learn's handwritten digits (1,797 images, d = 64, k = 10) as a bandit, features standardised.

    Constant pixels (always 0) keep the value 0 after standardisation.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = _standardise(X.astype(np.float64), X.astype(np.float64))
    return classification_bandit(X, y.astype(np.int64), num_steps, seed=seed, name="digits")


def fashion_bandit(
    num_steps: int = 5000,
    *,
    seed: int = 0,
    data_dir=None,
    num_components: int = 64,
    pca_rows: int = 10000,
) -> BanditData:
    """Fashion-MNIST as a 10-armed bandit on a PCA reduction of the pixels.

    The PCA (``num_components``) and the standardisation of its scores are fit on the first ``pca_rows``
    training images; the bandit's contexts come from the other training images, so the reduction never
    sees a context it is later asked about. Raises ``FileNotFoundError`` (from
    :func:`bayes_diglm.data.load_mnist_format`) when the files are missing.
    """
    from sklearn.decomposition import PCA

    from ..data import load_mnist_format

    images, labels = load_mnist_format(data_dir, split="train")
    pixels = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    if not 0 < pca_rows < pixels.shape[0]:
        raise ValueError(f"pca_rows must be in (0, {pixels.shape[0]}), got {pca_rows!r}")
    pca = PCA(num_components, random_state=0).fit(pixels[:pca_rows])
    ref = pca.transform(pixels[:pca_rows])
    X = _standardise(pca.transform(pixels[pca_rows:]), ref)
    return classification_bandit(X, labels[pca_rows:], num_steps, seed=seed, name="fashion")


def statlog_bandit(num_steps: int | None = None, *, seed: int = 0, path=None, split: str = "train") -> BanditData:
    """Statlog (shuttle) as a 7-armed bandit, the real-data bandit of Riquelme et al. (2018).

    Their protocol (``sample_statlog_data``): the rows of UCI's ``shuttle.trn`` in a random order, d = 9
    standardised sensor readings as the context, one arm per radiator state (class), reward 1 for the true
    class and 0 otherwise. The data are read from Debian's ``r-cran-mlbench`` (:func:`bayes_diglm.data.load_shuttle`:
    ``split="train"`` is ``shuttle.trn``'s 43,500 rows, ``"all"`` adds ``shuttle.tst``); the standardisation
    uses the split's mean and standard deviation (theirs those of the rows played). Raises
    ``FileNotFoundError`` when the file is missing. ``Rad.Flow`` (arm 0) is the true class of 78% of the rows,
    so always pulling it has regret 0.22 per step against Uniform's 0.86.
    """
    from ..data import load_shuttle

    if num_steps is not None:
        _check_steps(num_steps)
    data = load_shuttle(path, split=split)
    return classification_bandit(_standardise(data.X, data.X), data.y, num_steps, seed=seed, name="statlog")
