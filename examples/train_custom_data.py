"""Train vsgan's Pix2PixHD on your own paired images with plain `model.fit`.

Any `tf.data.Dataset` of (input, target) float32 batches works: (B, H, W, C_in) label-free
images and (B, H, W, C_out) stains scaled to [-1, 1]. Here the pairs are NumPy arrays
(replace `load_pairs` with your files), normalised by a `vsgan.StainPreprocessor` that the
model owns, so that it gives predictions back in your intensity units. (Without Python:
`vsgan train --data FOLDER ...`, see the README.)

    python examples/train_custom_data.py --epochs 5 --out my_model.keras
"""

import argparse

import numpy as np
import tensorflow as tf

import vsgan


def load_pairs(n: int = 48, size: int = 128):
    """Your data goes here: raw label-free fields and stains, (N, H, W, C) each."""
    spec = vsgan.synthetic_cells(n, size=size, seed=0)  # phase -> nuclei + membrane
    xs, ys = zip(*(field.read() for field in spec.fields))
    return np.stack(xs), np.stack(ys), spec.input_names, spec.target_names


def main(epochs: int, out: str, batch_size: int = 4) -> None:
    x, y, input_names, target_names = load_pairs()
    split = int(0.8 * len(x))  # split by field, never by crop
    preprocessor = vsgan.StainPreprocessor(
        input=vsgan.Normalization("median_iqr", per_field=True),  # inputs: each field alone
        target=vsgan.Normalization("percentile").fit(list(y[:split])),  # targets: train stats
    )
    x_model = preprocessor.normalize_input(x)
    y_model = np.clip(preprocessor.normalize_target(y), -1, 1)

    def dataset(a, b, shuffle):
        ds = tf.data.Dataset.from_tensor_slices((a, b))
        if shuffle:
            ds = ds.shuffle(len(a), seed=0)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    model = vsgan.Pix2PixHD(
        in_channels=x.shape[-1],
        out_channels=y.shape[-1],
        ngf=16,
        n_downsample=3,
        n_blocks=3,
        ndf=16,
        num_d=2,
        dropout=0.2,  # Monte-Carlo dropout: enables uncertainty maps in vsgan.stain
        lambda_l1=10.0,
        input_channels=input_names,
        output_channels=target_names,
        normalization=preprocessor,  # stored in the model's config
    )
    model.compile(niter=epochs // 2, niter_decay=epochs - epochs // 2)
    model.fit(
        dataset(x_model[:split], y_model[:split], shuffle=True),
        validation_data=dataset(x_model[split:], y_model[split:], shuffle=False),
        epochs=epochs,
        callbacks=[*vsgan.training.schedules(model), keras_backup(out)],
    )
    model.save(out)
    result = vsgan.stain(model, x[split], samples=4)  # raw field in, target units out
    print(f"saved {out}; held-out field stained: mean {result.mean.shape}, std {result.std.shape}")


def keras_backup(out: str):
    import keras

    return keras.callbacks.BackupAndRestore(out + ".backup")  # resume if interrupted


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="custom_model.keras")
    args = parser.parse_args()
    main(args.epochs, args.out)
