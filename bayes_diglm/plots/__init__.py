"""Matplotlib figures (Agg backend), one module per topic: density, regression, classification, bandits."""

import matplotlib

matplotlib.use("Agg")

__all__: list[str] = []
