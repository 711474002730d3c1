"""The model zoo: the preset table, `load_pretrained`, and conversion of PyTorch pix2pixHD
checkpoints (read without torch), including the seed's A549 models."""

from vsgan import _lazy

__getattr__, __dir__ = _lazy.attributes(
    __name__,
    {
        "list_pretrained": ".presets",
        "load_pretrained": ".presets",
        "get_preset": ".presets",
        "save_preset": ".presets",
        "preset_recipe": ".presets",
        "Preset": ".presets",
        "load_a549": ".a549",
        "OutputExistsError": ".pix2pixhd",
        "convert_checkpoint": ".pix2pixhd",
        "from_pix2pixhd": ".pix2pixhd",
        "infer_discriminator_config": ".pix2pixhd",
        "infer_generator_config": ".pix2pixhd",
        "load_discriminator_weights": ".pix2pixhd",
        "load_generator_weights": ".pix2pixhd",
        "load_torch_state_dict": ".torch_checkpoint",
    },
)
