"""Input checks of the DIGLM estimators: inputs, targets, validation and unlabelled data, the held-out split."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from ..._validation import check_count, check_labels, check_targets, numeric_array, refuse_overflow, refuse_text
from ...flows.spec import FlowSpec, resolve_flow

__all__ = ["_InputChecks", "_host"]

# As scikit-learn's MLPs: float32 inputs train a float32 network, all others (float64, int, object) float64.
_FLOAT_DTYPES = (np.float64, np.float32)


def _rows_like_training(name: str):
    """scikit-learn's array check of extra rows (validation, unlabelled) in the estimators' dtypes."""
    return lambda a: check_array(_host(a), dtype=_FLOAT_DTYPES, allow_nd=True, input_name=name)


def _host(X):
    """A torch tensor as a NumPy array of the same dtype (scikit-learn's checks would read it as float64)."""
    return X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X


class _InputChecks:
    """Checks of the inputs a DIGLM estimator takes (``fit``'s and a fitted estimator's)."""

    def _validate_X(self, X) -> torch.Tensor:
        """Validated float32 inputs for a fitted estimator (feature count and shape as in ``fit``)."""
        check_is_fitted(self)
        X = numeric_array(X, "X", lambda a: validate_data(self, _host(a), reset=False, dtype=_FLOAT_DTYPES,
                                                          allow_nd=True), self._dtype())
        expected = tuple(self.model_.flow.event_shape)
        if tuple(X.shape[1:]) != expected:
            raise ValueError(f"X must have shape (n, {', '.join(map(str, expected))}), got {tuple(X.shape)}")
        return torch.tensor(X, dtype=self._dtype())

    def _dtype(self) -> torch.dtype:
        """The network's dtype, fixed by the training inputs' (float32 stays float32, anything else float64)."""
        return getattr(torch, self.config_.get("dtype", "float32"))

    def _validate_fit(self, X, y, *, y_numeric: bool):
        refuse_text(X, "X")
        y = (check_targets if y_numeric else check_labels)(_host(y), "y")
        X, y = validate_data(self, _host(X), y, dtype=_FLOAT_DTYPES, allow_nd=True, y_numeric=y_numeric)
        refuse_overflow(X, "X", X.dtype)
        self._flow_spec(X.shape)  # refuse a flow or a shape it cannot take before training anything
        return torch.tensor(X), y

    @staticmethod
    def _validate_unlabeled(X_unlabeled, X: torch.Tensor) -> torch.Tensor | None:
        """Unlabelled inputs checked like the training inputs (None stays None)."""
        if X_unlabeled is None:
            return None
        X_unlabeled = numeric_array(X_unlabeled, "X_unlabeled", _rows_like_training("X_unlabeled"), X.dtype)
        if tuple(X_unlabeled.shape[1:]) != tuple(X.shape[1:]):
            raise ValueError(f"X_unlabeled rows have shape {tuple(X_unlabeled.shape[1:])}, X rows "
                             f"{tuple(X.shape[1:])}")
        return torch.tensor(X_unlabeled, dtype=X.dtype)

    @staticmethod
    def _validate_val(X_val, y_val, X: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """Validation data checked like the training data (without touching the estimator's fitted state)."""
        if y_val is None or X_val is None:
            raise ValueError("give both X_val and y_val, or neither")
        X_val = numeric_array(X_val, "X_val", _rows_like_training("X_val"), X.dtype)
        if tuple(X_val.shape[1:]) != tuple(X.shape[1:]):
            raise ValueError(f"X_val rows have shape {tuple(X_val.shape[1:])}, X rows {tuple(X.shape[1:])}")
        y_val = column_or_1d(_host(y_val), warn=True)
        if y_val.shape[0] != X_val.shape[0]:
            raise ValueError(f"mismatched validation data: X_val has {X_val.shape[0]} rows, y_val {y_val.shape[0]}")
        return torch.tensor(X_val, dtype=X.dtype), y_val

    def _flow_spec(self, shape: tuple[int, ...]) -> FlowSpec:
        """``flow=`` and ``flow_kwargs`` resolved for data of ``shape`` (:func:`bayes_diglm.flows.resolve_flow`)."""
        return resolve_flow(self.flow, self.flow_kwargs, shape)

    def validation_split(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Row indices that :meth:`fit` on ``n`` rows (without ``X_val``) trains on and holds out.

        ``round(val_fraction * n)`` rows (at least one), drawn without replacement by a generator seeded with
        ``seed``, are held out for the validation objective (early stopping with ``patience``); the posterior
        head, like the network, is fitted on the other rows. The split depends only on ``n``, ``val_fraction``
        and ``seed``, so it can be asked for before or after :meth:`fit`, e.g. to score the held-out rows.

        Parameters
        ----------
        n : int
            The number of rows of the ``X`` given to :meth:`fit`.

        Returns
        -------
        train_rows : ndarray of int
            The rows trained on (every row when ``val_fraction`` is 0).
        val_rows : ndarray of int or None
            The held-out rows (None when ``val_fraction`` is 0).

        Raises
        ------
        TypeError, ValueError
            ``n`` not a positive integer; ``val_fraction`` outside [0, 1) or leaving no training rows out of ``n``.

        Examples
        --------
        >>> from bayes_diglm import DIGLMRegressor
        >>> train, val = DIGLMRegressor(val_fraction=0.2).validation_split(10)
        >>> len(train), len(val), sorted([*train, *val]) == list(range(10))
        (8, 2, True)
        """
        n = check_count(n, "n")
        if not self.val_fraction:
            return np.arange(n), None
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        n_val = max(1, int(round(self.val_fraction * n)))
        if n_val >= n:
            raise ValueError(f"val_fraction={self.val_fraction!r} leaves no training rows out of {n}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).numpy()
        return perm[n_val:], perm[:n_val]
