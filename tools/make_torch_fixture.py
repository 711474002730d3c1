"""Writes the PyTorch pix2pixHD fixtures of `tests/test_convert.py` (needs torch; run by hand).

An independent PyTorch implementation of pix2pixHD's GlobalGenerator, LocalEnhancer and
multi-scale discriminator, written from the architecture description (REFERENCE.md
section 1) with the module names of the original code, so the state-dict keys are the
original's: `model.<i>.weight`, `model.<i>.conv_block.<j>.weight`, `model1_1.<i>.weight`,
`scale<i>_layer<j>.0.weight`. Small seeded random networks are saved with `torch.save`
(zip format) together with a fixed input and the torch output, for the parity tests.

torch is never a vsgan dependency: install it in a throw-away environment, e.g.

    python -m venv --system-site-packages /tmp/torchenv
    /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python tools/make_torch_fixture.py tests/fixtures
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn


def norm(channels: int) -> nn.Module:
    """pix2pixHD's 'instance' norm: no affine parameters, no running statistics."""
    return nn.InstanceNorm2d(channels, affine=False)


class ResnetBlock(nn.Module):
    """x + conv_block(x), conv_block as in the original (optionally with a dropout slot)."""

    def __init__(self, dim: int, use_dropout: bool = False):
        super().__init__()
        layers = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            norm(dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            # Shifts the second conv from index 5 to 6, as in dropout-enabled checkpoints.
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


def global_layers(
    in_ch: int, out_ch: int, ngf: int, n_down: int, n_blocks: int, dropout: bool
) -> list[nn.Module]:
    """The GlobalGenerator's sequential layer list."""
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), norm(ngf), nn.ReLU(True)]
    for i in range(n_down):
        c = ngf * 2**i
        layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), norm(2 * c), nn.ReLU(True)]
    c = ngf * 2**n_down
    layers += [ResnetBlock(c, dropout) for _ in range(n_blocks)]
    for i in range(n_down):
        c = ngf * 2 ** (n_down - i)
        layers += [
            nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
            norm(c // 2),
            nn.ReLU(True),
        ]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
    return layers


class GlobalGenerator(nn.Module):
    """pix2pixHD G1."""

    def __init__(self, in_ch, out_ch, ngf, n_down, n_blocks, dropout=False):
        super().__init__()
        self.model = nn.Sequential(*global_layers(in_ch, out_ch, ngf, n_down, n_blocks, dropout))

    def forward(self, x):
        return self.model(x)


class LocalEnhancer(nn.Module):
    """pix2pixHD G2 with one enhancer: G1 (2 ngf, minus its head) on the half-size input."""

    def __init__(self, in_ch, out_ch, ngf, n_down, n_blocks, n_blocks_local, dropout=False):
        super().__init__()
        g1 = global_layers(in_ch, out_ch, 2 * ngf, n_down, n_blocks, dropout)[:-3]
        self.model = nn.Sequential(*g1)
        self.model1_1 = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, 7),
            norm(ngf),
            nn.ReLU(True),
            nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1),
            norm(2 * ngf),
            nn.ReLU(True),
        )
        self.model1_2 = nn.Sequential(
            *[ResnetBlock(2 * ngf, dropout) for _ in range(n_blocks_local)],
            nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1),
            norm(ngf),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, out_ch, 7),
            nn.Tanh(),
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        coarse = self.model(self.downsample(x))
        return self.model1_2(self.model1_1(x) + coarse)


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD D with intermediate features: `scale<i>_layer<j>` sequentials."""

    def __init__(self, in_ch, ndf, n_layers, num_d):
        super().__init__()
        self.num_d, self.n_layers = num_d, n_layers
        for i in range(num_d):
            for j, seq in enumerate(self._patch_layers(in_ch, ndf, n_layers)):
                setattr(self, f"scale{i}_layer{j}", seq)
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    @staticmethod
    def _patch_layers(in_ch, ndf, n_layers):
        seqs = [nn.Sequential(nn.Conv2d(in_ch, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True))]
        nf = ndf
        for n in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            seqs.append(
                nn.Sequential(nn.Conv2d(prev, nf, 4, stride, 2), norm(nf), nn.LeakyReLU(0.2, True))
            )
        seqs.append(nn.Sequential(nn.Conv2d(nf, 1, 4, 1, 2)))
        return seqs

    def forward(self, x):
        """Returns, per scale (full resolution first), the list of all layer outputs."""
        results = []
        for i in range(self.num_d):
            # The original runs scale num_d-1 on the full input; scale 0 on the smallest.
            feats, h = [], x
            for j in range(self.n_layers + 2):
                h = getattr(self, f"scale{self.num_d - 1 - i}_layer{j}")(h)
                feats.append(h)
            results.append(feats)
            x = self.downsample(x)
        return results


GENERATORS = {
    # name: (kind, constructor kwargs, input shape NCHW)
    "global_basic": (
        "global",
        dict(in_ch=1, out_ch=1, ngf=4, n_down=2, n_blocks=2),
        (1, 1, 32, 32),
    ),
    "global_dropout": (
        "global",
        dict(in_ch=1, out_ch=1, ngf=4, n_down=2, n_blocks=2, dropout=True),
        (1, 1, 32, 32),
    ),
    # Non-square input and more channels catch transposed height/width or channel axes.
    "global_in2": (
        "global",
        dict(in_ch=2, out_ch=3, ngf=4, n_down=3, n_blocks=1),
        (1, 2, 40, 24),
    ),
    "local": (
        "local",
        dict(in_ch=1, out_ch=1, ngf=2, n_down=2, n_blocks=1, n_blocks_local=2),
        (1, 1, 32, 32),
    ),
}


def spread_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Redraws weights (std 1 / sqrt(fan-in)) and biases (std 0.5) from a seeded generator.

    Large biases make a wrong bias mapping visible; the weight scale keeps the final tanh
    out of saturation, where a wrong mapping could hide.
    """
    with torch.no_grad():
        for p in module.parameters():
            std = 0.5 if p.ndim == 1 else float(np.prod(p.shape[1:])) ** -0.5
            p.copy_(torch.randn(p.shape, generator=generator) * std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for seed, (name, (kind, kwargs, shape)) in enumerate(GENERATORS.items()):
        torch.manual_seed(seed)
        net = GlobalGenerator(**kwargs) if kind == "global" else LocalEnhancer(**kwargs)
        spread_weights(net, torch.Generator().manual_seed(100 + seed))
        net.eval()  # dropout off: the parity test compares deterministic outputs
        x = torch.randn(shape, generator=torch.Generator().manual_seed(200 + seed))
        with torch.no_grad():
            y = net(x)
        torch.save(net.state_dict(), args.out_dir / f"{name}.pth")
        np.save(args.out_dir / f"{name}_input.npy", x.numpy().astype(np.float32))
        np.save(args.out_dir / f"{name}_output.npy", y.numpy().astype(np.float32))
        manifest[name] = {"kind": kind, **kwargs, "input_shape": list(shape)}

    d = MultiscaleDiscriminator(in_ch=2, ndf=4, n_layers=3, num_d=2)
    spread_weights(d, torch.Generator().manual_seed(300))
    x = torch.randn((1, 2, 32, 32), generator=torch.Generator().manual_seed(301))
    with torch.no_grad():
        outs = d(x)
    torch.save(d.state_dict(), args.out_dir / "discriminator.pth")
    np.save(args.out_dir / "discriminator_input.npy", x.numpy())
    arrays = {
        f"scale{i}_layer{j}": f.numpy() for i, fs in enumerate(outs) for j, f in enumerate(fs)
    }
    np.savez(args.out_dir / "discriminator_outputs.npz", **arrays)
    manifest["discriminator"] = {"in_ch": 2, "ndf": 4, "n_layers": 3, "num_d": 2}

    (args.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for path in sorted(args.out_dir.iterdir()):
        print(f"{path.stat().st_size:>8}  {path.name}")


if __name__ == "__main__":
    main()
