"""The networks: generators, discriminators and the Pix2PixHD GAN that trains them."""

from vsgan.models.discriminator import MultiScaleDiscriminator, PatchDiscriminator
from vsgan.models.generator import GlobalGenerator, LocalEnhancer, ResnetBlock
from vsgan.models.pix2pixhd import Pix2PixHD

__all__ = [
    "GlobalGenerator",
    "LocalEnhancer",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "Pix2PixHD",
    "ResnetBlock",
]
