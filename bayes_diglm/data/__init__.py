"""Data loaders: NYC flights, MNIST-format images, out-of-distribution image sets and synthetic data."""

from bayes_diglm.data.flights import (
    FEATURE_NAMES,
    TARGET_NAME,
    FlightsSplit,
    build_flight_features,
    clock_to_minutes,
    flights_data_dir,
    load_flights,
    split_flights,
)
from bayes_diglm.data.idx import DEFAULT_DATA_DIR, load_mnist_format, read_idx
from bayes_diglm.data.ood import LETTERS, letter_fonts, notmnist_letters, sklearn_digits_28, uniform_noise
from bayes_diglm.data.synthetic import (
    flights_like,
    flights_like_frame,
    make_regression_data,
    make_two_class_2d,
    regression_mean,
    regression_noise_std,
    two_moons_like,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "FEATURE_NAMES",
    "LETTERS",
    "TARGET_NAME",
    "FlightsSplit",
    "build_flight_features",
    "clock_to_minutes",
    "flights_data_dir",
    "flights_like",
    "flights_like_frame",
    "letter_fonts",
    "load_flights",
    "load_mnist_format",
    "make_regression_data",
    "make_two_class_2d",
    "notmnist_letters",
    "read_idx",
    "regression_mean",
    "regression_noise_std",
    "sklearn_digits_28",
    "split_flights",
    "two_moons_like",
    "uniform_noise",
]
