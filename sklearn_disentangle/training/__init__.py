"""Training core shared by every estimator: the skorch net, callbacks and data feeding."""

from .callbacks import (
    CosineCyclic,
    LinearWarmup,
    LossTermsLogger,
    NaNGuard,
    NonFiniteLossError,
    ParamSchedule,
    ProgressBar,
)
from .data import TensorBatchLoader, as_batch_source, to_batch_tensor
from .net import DisentangleNet

__all__ = [
    "DisentangleNet",
    "TensorBatchLoader",
    "as_batch_source",
    "to_batch_tensor",
    "LinearWarmup",
    "CosineCyclic",
    "ParamSchedule",
    "NaNGuard",
    "NonFiniteLossError",
    "ProgressBar",
    "LossTermsLogger",
]
