"""Import of PyTorch pix2pixHD checkpoints (read without torch) and the seed's A549 models."""

from vsgan.convert.a549 import load_a549
from vsgan.convert.pix2pixhd import (
    OutputExistsError,
    convert_checkpoint,
    from_pix2pixhd,
    infer_discriminator_config,
    infer_generator_config,
    load_discriminator_weights,
    load_generator_weights,
    save_keras_atomic,
)
from vsgan.convert.torch_checkpoint import load_torch_state_dict

__all__ = [
    "OutputExistsError",
    "convert_checkpoint",
    "from_pix2pixhd",
    "infer_discriminator_config",
    "infer_generator_config",
    "load_a549",
    "load_discriminator_weights",
    "load_generator_weights",
    "load_torch_state_dict",
    "save_keras_atomic",
]
