"""Train/test pool handling shared by SAP and DCI."""

import numpy as np

from ._validation import check_factors_codes, check_fraction, split_train_test

DEFAULT_TRAIN_FRACTION = 2.0 / 3.0


def train_test_pools(factors, codes, factors_test, codes_test, train_fraction, *, min_codes):
    """Validate and return (factors_train, codes_train, factors_test, codes_test).

    Without a test pool the first ``ceil(n * train_fraction)`` rows train and the rest
    test, as disentanglement_lib's ``split_train_test`` (no shuffling).
    """
    if (factors_test is None) != (codes_test is None):
        raise ValueError(
            "pass both factors_test and codes_test (a held-out pool) or neither (then the "
            "last rows of the given pool are held out)."
        )
    if factors_test is None:
        train_fraction = check_fraction(train_fraction, "train_fraction")
        factors, codes = check_factors_codes(factors, codes, min_codes=min_codes, check_distinct=False)
        n_train = split_train_test(factors.shape[0], train_fraction)
        if n_train >= factors.shape[0]:
            raise ValueError(
                f"{factors.shape[0]} samples leave no held-out rows with train_fraction="
                f"{train_fraction}; pass more samples or an explicit test pool."
            )
        factors_test, codes_test = factors[n_train:], codes[n_train:]
        factors, codes = factors[:n_train], codes[:n_train]
    factors, codes = check_factors_codes(factors, codes, min_codes=min_codes)
    factors_test, codes_test = check_factors_codes(
        factors_test,
        codes_test,
        factors_name="factors_test",
        codes_name="codes_test",
        min_codes=min_codes,
        min_samples=1,
        check_distinct=False,
    )
    if factors_test.shape[1] != factors.shape[1] or codes_test.shape[1] != codes.shape[1]:
        raise ValueError(
            f"the test pool must have the same columns as the training pool: factors "
            f"{factors.shape[1]} vs {factors_test.shape[1]}, codes {codes.shape[1]} vs "
            f"{codes_test.shape[1]}."
        )
    return factors, codes.astype(np.float64), factors_test, codes_test.astype(np.float64)
