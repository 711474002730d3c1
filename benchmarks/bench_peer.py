"""vsgan against a PyTorch re-implementation of pix2pixHD's architecture, side by side.

Two long-lived worker processes, one per framework, build the same networks once (the
global generator G1 and the multi-scale PatchGAN discriminator with intermediate features,
pix2pixHD's layer for layer) and answer timing requests; the parent alternates the
requests between them, round by round, so a change of load on a shared machine hits both
alike, and prints the ratios from this one run.

    ms                          | vsgan f32 | vsgan mixed_bf16 | torch f32 | torch bf16 autocast
    train step S x S, batch 1   |
    generator forward F x F     |
    vsgan.stain F x F, defaults |

Goals (issue 15): vsgan's bf16 train step <= 0.6x the peer's bf16 time; default
whole-field staining of a one-tile field >= 1.3x the peer's bf16 forward Mpx/s.

PyTorch is never a vsgan dependency: it lives in a benchmark-only virtual environment,
made on request (`--setup`, `pip install torch numpy` into `--venv`, default
/tmp/vsgan-peer), and only the peer worker runs in it.

    python benchmarks/bench_peer.py --setup                   # once: the torch venv
    nice -n 10 python benchmarks/bench_peer.py                # seed configuration, 2 rounds
    nice -n 10 python benchmarks/bench_peer.py --config compact --rounds 3

The peer's train step is pix2pixHD's (`Pix2PixHDModel.forward` + `train.py`): one G
forward, D on (x, fake.detach()), on (x, y) and on (x, fake), LSGAN + feature matching
(lambda 10), G's Adam step, then D's. vsgan's step differentiates one D(x, fake) pass on
two tapes instead (`Pix2PixHD.train_step`): the same losses and updates with one D pass
fewer. Both use Adam(2e-4, 0.5, 0.999) and as many threads as the machine has CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VENV = "/tmp/vsgan-peer"

CONFIGS = {
    # The seed configuration (Pix2PixHD defaults for D).
    "seed": dict(
        in_channels=1, out_channels=2, ngf=64, n_downsample=4, n_blocks=9, ndf=64, num_d=3
    ),
    # A quick check of the script itself (the isl-nuclei architecture).
    "compact": dict(
        in_channels=13, out_channels=1, ngf=16, n_downsample=3, n_blocks=4, ndf=16, num_d=2
    ),
}
N_LAYERS_D, LAMBDA_FEAT, DROPOUT = 3, 10.0, 0.0
PRECISIONS = ("float32", "bfloat16")


# ------------------------------------------------------------------------------ vsgan side
class VsganWorker:
    def __init__(self, config: dict, train_size: int, forward_size: int):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
        import numpy as np

        import vsgan
        from vsgan.inference.stain import _passes, default_precision

        sys.path.insert(0, HERE)
        from common import flops, train_step_flops

        self.keras, self.np = keras, np
        rng = np.random.default_rng(0)
        c = config
        self.models = {}
        for precision in PRECISIONS:
            keras.mixed_precision.set_global_policy(
                "mixed_bfloat16" if precision == "bfloat16" else "float32"
            )
            try:
                keras.utils.set_random_seed(0)
                model = vsgan.Pix2PixHD(**c, n_layers_d=N_LAYERS_D, dropout=DROPOUT)
                model.compile()
            finally:
                keras.mixed_precision.set_global_policy("float32")
            self.models[precision] = model
        base = self.models["float32"]
        self.x = rng.standard_normal((1, train_size, train_size, c["in_channels"])).astype(
            "float32"
        )
        self.y = np.tanh(rng.standard_normal((1, train_size, train_size, c["out_channels"])))
        self.y = self.y.astype("float32")
        self.xf = rng.standard_normal((1, forward_size, forward_size, c["in_channels"]))
        self.xf = self.xf.astype("float32")
        self.field = (2000 + 300 * rng.standard_normal((forward_size, forward_size, 1))).astype(
            "uint16"
        )
        self.field = np.repeat(self.field, c["in_channels"], axis=-1)
        self.forward_fns = {p: _passes(base.generator, p).forward for p in PRECISIONS}
        self.info = {
            "default_precision": default_precision(),
            "train_gflop": train_step_flops(base, 1, train_size, train_size).total / 1e9,
            "forward_gflop": flops(base.generator, self.xf.shape) / 1e9,
            "framework": f"TensorFlow {__import__('tensorflow').__version__}, Keras "
            f"{keras.__version__}",
        }
        self.warm = set()

    def run(self, case: str, precision: str) -> float:
        np = self.np
        if case == "train":
            model = self.models[precision]
            fn = lambda: model.train_on_batch(self.x, self.y)  # noqa: E731
        elif case == "forward":
            forward = self.forward_fns[precision]
            fn = lambda: np.asarray(forward(self.xf))  # noqa: E731
        elif case == "stain":
            from vsgan.inference.stain import stain

            model = self.models["float32"]  # built like a preset; stain picks the precision
            fn = lambda: stain(model, self.field)  # noqa: E731
        else:
            raise ValueError(case)
        if (case, precision) not in self.warm:
            fn(), fn()  # trace and warm up
            self.warm.add((case, precision))
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


# ------------------------------------------------------------------------------ torch side
def torch_networks(c: dict):
    """pix2pixHD's GlobalGenerator and MultiscaleDiscriminator (getIntermFeat=True)."""
    import torch.nn as nn

    def norm(ch):
        return nn.InstanceNorm2d(ch, affine=False)

    class ResnetBlock(nn.Module):
        def __init__(self, dim):
            super().__init__()
            layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim), nn.ReLU(True)]
            if DROPOUT:
                layers.append(nn.Dropout(DROPOUT))
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim)]
            self.conv_block = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv_block(x)

    ngf, n_down = c["ngf"], c["n_downsample"]
    g = [nn.ReflectionPad2d(3), nn.Conv2d(c["in_channels"], ngf, 7), norm(ngf), nn.ReLU(True)]
    for i in range(n_down):
        mult = 2**i
        g += [
            nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
            norm(ngf * mult * 2),
            nn.ReLU(True),
        ]
    g += [ResnetBlock(ngf * 2**n_down) for _ in range(c["n_blocks"])]
    for i in range(n_down):
        mult = 2 ** (n_down - i)
        g += [
            nn.ConvTranspose2d(
                ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1
            ),
            norm(ngf * mult // 2),
            nn.ReLU(True),
        ]
    g += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, c["out_channels"], 7), nn.Tanh()]
    generator = nn.Sequential(*g)

    class NLayerDiscriminator(nn.Module):
        def __init__(self, in_ch, ndf, n_layers):
            super().__init__()
            kw, pad = 4, 2
            seq = [[nn.Conv2d(in_ch, ndf, kw, 2, pad), nn.LeakyReLU(0.2, True)]]
            nf = ndf
            for _ in range(1, n_layers):
                prev, nf = nf, min(nf * 2, 512)
                seq.append([nn.Conv2d(prev, nf, kw, 2, pad), norm(nf), nn.LeakyReLU(0.2, True)])
            prev, nf = nf, min(nf * 2, 512)
            seq.append([nn.Conv2d(prev, nf, kw, 1, pad), norm(nf), nn.LeakyReLU(0.2, True)])
            seq.append([nn.Conv2d(nf, 1, kw, 1, pad)])
            self.stages = nn.ModuleList(nn.Sequential(*s) for s in seq)

        def forward(self, x):
            out = []
            for stage in self.stages:
                x = stage(x)
                out.append(x)
            return out

    class MultiscaleDiscriminator(nn.Module):
        def __init__(self, in_ch, ndf, n_layers, num_d):
            super().__init__()
            self.scales = nn.ModuleList(
                NLayerDiscriminator(in_ch, ndf, n_layers) for _ in range(num_d)
            )
            self.down = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)

        def forward(self, x):
            result = []
            for i, d in enumerate(self.scales):
                result.append(d(x))
                if i != len(self.scales) - 1:
                    x = self.down(x)
            return result

    pair = c["in_channels"] + c["out_channels"]
    return generator, MultiscaleDiscriminator(pair, c["ndf"], N_LAYERS_D, c["num_d"])


class TorchWorker:
    def __init__(self, config: dict, train_size: int, forward_size: int):
        import torch

        self.torch = torch
        torch.manual_seed(0)
        torch.set_num_threads(os.cpu_count() or 1)
        self.G, self.D = torch_networks(config)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        c = config
        self.x = torch.randn(1, c["in_channels"], train_size, train_size)
        self.y = torch.tanh(torch.randn(1, c["out_channels"], train_size, train_size))
        self.xf = torch.randn(1, c["in_channels"], forward_size, forward_size)
        self.num_d = c["num_d"]
        self.info = {"framework": f"PyTorch {torch.__version__}"}
        self.warm = set()

    def _autocast(self, precision):
        import contextlib

        if precision == "bfloat16":
            return self.torch.autocast("cpu", dtype=self.torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, precision):
        torch, F = self.torch, self.torch.nn.functional
        self.G.train(), self.D.train()
        with self._autocast(precision):
            fake = self.G(self.x)
            pred_fake_pool = self.D(torch.cat([self.x, fake.detach()], 1))
            pred_real = self.D(torch.cat([self.x, self.y], 1))
            pred_fake = self.D(torch.cat([self.x, fake], 1))

            def lsgan(preds, real):
                return sum(
                    F.mse_loss(p[-1], torch.full_like(p[-1], 1.0 if real else 0.0)) for p in preds
                )

            loss_d = 0.5 * (lsgan(pred_fake_pool, False) + lsgan(pred_real, True))
            feat_weight, d_weight = 4.0 / (N_LAYERS_D + 1), 1.0 / self.num_d
            feat = sum(
                d_weight * feat_weight * F.l1_loss(f, r.detach()) * LAMBDA_FEAT
                for fs, rs in zip(pred_fake, pred_real)
                for f, r in zip(fs[:-1], rs[:-1])
            )
            loss_g = lsgan(pred_fake, True) + feat
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()

    def forward(self, precision):
        self.G.eval()
        with self.torch.inference_mode(), self._autocast(precision):
            return self.G(self.xf).float()

    def run(self, case: str, precision: str) -> float:
        fn = {"train": self.train_step, "forward": self.forward}[case]
        if (case, precision) not in self.warm:
            fn(precision), fn(precision)
            self.warm.add((case, precision))
        start = time.perf_counter()
        fn(precision)
        return time.perf_counter() - start


def worker_main(kind: str, config: str, train_size: int, forward_size: int) -> None:
    cls = VsganWorker if kind == "vsgan" else TorchWorker
    worker = cls(CONFIGS[config], train_size, forward_size)
    print(json.dumps({"ready": True, **worker.info}), flush=True)
    for line in sys.stdin:
        case, precision = line.split()
        try:
            print(json.dumps({"seconds": worker.run(case, precision)}), flush=True)
        except Exception as error:  # report, keep serving
            print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)


# ------------------------------------------------------------------------------ parent
class Worker:
    def __init__(self, python: str, kind: str, args, env=None):
        cmd = [python, os.path.abspath(__file__), "--worker", kind, "--config", args.config]
        cmd += ["--train-size", str(args.train_size), "--forward-size", str(args.forward_size)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker ended (exit {self.proc.wait()})")
        return json.loads(line)

    def ask(self, case: str, precision: str) -> float | None:
        self.proc.stdin.write(f"{case} {precision}\n")
        self.proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            print(f"  {case} {precision}: {answer['error']}", file=sys.stderr)
            return None
        return answer["seconds"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def setup(venv: str) -> None:
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = os.path.join(venv, "bin", "pip")
    subprocess.run([pip, "install", "torch", "numpy"], check=True)


def _native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    have = sorted(flags & {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
                    return " ".join(have) or "none of avx512f / avx512_bf16 / amx"
    except OSError:
        pass
    return "unknown"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="seed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--forward-size", type=int, default=512)
    parser.add_argument("--venv", default=DEFAULT_VENV, help="the torch-only environment")
    parser.add_argument("--setup", action="store_true", help="create --venv with torch, exit")
    parser.add_argument("--cases", nargs="+", default=["train", "forward", "stain"])
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        help="default: both where the CPU has native bf16 (AVX512-BF16 / AMX), else float32 "
        "only (both frameworks emulate bf16 there, many times slower: no meaningful ratio)",
    )
    parser.add_argument("--worker", choices=["vsgan", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.config, args.train_size, args.forward_size)
        return
    if args.setup:
        setup(args.venv)
        return
    precisions = args.precisions or (list(PRECISIONS) if _native_bf16() else ["float32"])
    torch_python = os.path.join(args.venv, "bin", "python")
    if not os.path.exists(torch_python):
        sys.exit(f"{torch_python} not found: run `python {sys.argv[0]} --setup` first.")

    sys.path.insert(0, HERE)
    from common import load_line

    print(
        f"bench_peer: config {args.config} {CONFIGS[args.config]}; train {args.train_size}^2 "
        f"batch 1, forward / stain {args.forward_size}^2; {args.rounds} rounds; "
        f"CPU flags: {_cpu_flags()}; {load_line()} at start",
        flush=True,
    )
    repo = os.path.dirname(HERE)
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ours = Worker(sys.executable, "vsgan", args, env)
    peer = Worker(torch_python, "torch", args)
    print(
        f"vsgan: {ours.info['framework']}; default stain precision "
        f"{ours.info['default_precision']}; peer: {peer.info['framework']}",
        flush=True,
    )
    requests = []
    for case in args.cases:
        if case == "stain":
            requests.append((ours, "vsgan", "stain", "default"))
            continue
        for precision in precisions:
            requests += [(ours, "vsgan", case, precision), (peer, "torch", case, precision)]
    times: dict[tuple, list[float]] = {}
    for r in range(args.rounds):
        order = requests if r % 2 == 0 else requests[::-1]  # alternate who goes first
        for worker, who, case, precision in order:
            s = worker.ask(case, precision)
            if s is not None:
                times.setdefault((who, case, precision), []).append(s)
                print(
                    f"  round {r + 1}: {who:5s} {case:7s} {precision:8s} {1e3 * s:9.0f} ms",
                    flush=True,
                )
    ours.close(), peer.close()

    def ms(who, case, precision):
        values = times.get((who, case, precision))
        return 1e3 * statistics.median(values) if values else float("nan")

    def cell(who, case, precision):
        values = times.get((who, case, precision), [])
        return " / ".join(f"{1e3 * v:.0f}" for v in values) or "-"

    header = "| ms | vsgan float32 | vsgan mixed_bfloat16 | torch float32 | torch bf16 autocast |"
    print("\n" + header + "\n|---|---|---|---|---|")
    labels = {
        "train": f"train step {args.train_size} x {args.train_size}, batch 1",
        "forward": f"generator forward {args.forward_size} x {args.forward_size}",
    }
    for case in ("train", "forward"):
        if case in args.cases:
            print(
                f"| {labels[case]} | {cell('vsgan', case, 'float32')} | "
                f"{cell('vsgan', case, 'bfloat16')} | {cell('torch', case, 'float32')} | "
                f"{cell('torch', case, 'bfloat16')} |"
            )
    if "stain" in args.cases:
        print(
            f"| `vsgan.stain` {args.forward_size} x {args.forward_size} field, defaults | "
            f"{cell('vsgan', 'stain', 'default')} | | | |"
        )
    print()
    gf = {"train": ours.info["train_gflop"], "forward": ours.info["forward_gflop"]}
    for case in ("train", "forward"):
        if case not in args.cases:
            continue
        for precision in precisions:
            a, b = ms("vsgan", case, precision), ms("torch", case, precision)
            print(
                f"{case:7s} {precision:8s} vsgan {a:8.0f} ms ({gf[case] / a * 1e3:6.1f} GFLOP/s)"
                f"  torch {b:8.0f} ms ({gf[case] / b * 1e3:6.1f} GFLOP/s)  vsgan / torch time "
                f"{a / b:5.2f}x"
            )
    mpx = args.forward_size**2 / 1e6
    peer_precision = "bfloat16" if "bfloat16" in precisions else "float32"
    if peer_precision != "bfloat16":
        print("no native bf16 on this CPU: the goals below compare against the peer's float32")
    if "train" in args.cases:
        ratio = ms("vsgan", "train", peer_precision) / ms("torch", "train", peer_precision)
        print(
            f"GOAL train step, {peer_precision}: vsgan / torch time {ratio:.2f}x (goal <= 0.60x: "
            f"{'met' if ratio <= 0.6 else 'MISSED'})"
        )
    if "stain" in args.cases and "forward" in args.cases:
        ours_mpx = mpx / ms("vsgan", "stain", "default") * 1e3
        peer_mpx = mpx / ms("torch", "forward", peer_precision) * 1e3
        ratio = ours_mpx / peer_mpx
        print(
            f"GOAL default stain {ours_mpx:.3f} Mpx/s vs torch {peer_precision} forward "
            f"{peer_mpx:.3f} "
            f"Mpx/s: {ratio:.2f}x (goal >= 1.30x: {'met' if ratio >= 1.3 else 'MISSED'})"
        )
    print(f"{load_line()} at end")


if __name__ == "__main__":
    main()
