"""`vsgan.metrics`: image, instance and uncertainty metrics (see `vsgan.evaluation`)."""

from vsgan.evaluation.metrics import *  # noqa: F403
from vsgan.evaluation.metrics import __all__  # noqa: F401
