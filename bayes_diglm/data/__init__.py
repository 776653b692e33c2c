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
    "FEATURE_NAMES",
    "TARGET_NAME",
    "FlightsSplit",
    "build_flight_features",
    "clock_to_minutes",
    "flights_data_dir",
    "flights_like",
    "flights_like_frame",
    "load_flights",
    "make_regression_data",
    "make_two_class_2d",
    "regression_mean",
    "regression_noise_std",
    "split_flights",
    "two_moons_like",
]
