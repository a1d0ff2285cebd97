"""The Keras models of "Your own model": written as a Keras user writes them, saved to `.keras`
files, and trained through the trainer's `--keras_model` (which converts them with
`rlra_tf.models.from_keras`).

- `cnn`: Conv-BN-ReLU-MaxPool x2, Flatten, Dense 128, Dropout 0.3, Dense 10 softmax (a
  `keras.Sequential`, Keras' default BatchNorm momentum 0.99).
- `vgg`: VGG-style, three stages of two 3x3 convolutions (32, 64, 128 channels, ReLU, no
  BatchNorm) each followed by a 2x2 max-pool, Flatten, Dense 256 x2 (ReLU), Dense 10 softmax.
"""

import keras

L = keras.layers


def cnn(input_shape=(28, 28, 1), num_classes=10):
    return keras.Sequential([
        keras.Input(input_shape),
        L.Conv2D(32, 3, padding="same"), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(),
        L.Conv2D(64, 3, padding="same"), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(),
        L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.3),
        L.Dense(num_classes, activation="softmax"),
    ], name="keras_cnn")


def vgg(input_shape=(28, 28, 1), num_classes=10):
    layers = [keras.Input(input_shape)]
    for filters in (32, 64, 128):
        layers += [L.Conv2D(filters, 3, padding="same", activation="relu"),
                   L.Conv2D(filters, 3, padding="same", activation="relu"), L.MaxPooling2D()]
    layers += [L.Flatten(), L.Dense(256, activation="relu"), L.Dense(256, activation="relu"),
               L.Dense(num_classes, activation="softmax")]
    return keras.Sequential(layers, name="keras_vgg")


MODELS = {"cnn": cnn, "vgg": vgg}
DESCRIPTIONS = {
    "cnn": "Keras Sequential CNN: Conv 32-BN-ReLU-MaxPool, Conv 64-BN-ReLU-MaxPool, Dense 128 "
           "ReLU, Dropout 0.3, Dense 10 softmax (Keras' BatchNorm, momentum 0.99)",
    "vgg": "Keras VGG-style CNN without BatchNorm: Conv 32 x2, pool, Conv 64 x2, pool, Conv 128 "
           "x2, pool, Dense 256 x2 (ReLU), Dense 10 softmax",
}


def save(name, path, seed=0):
    """Builds model `name` (its weights from `seed`) and saves it to `path` (a `.keras` file)."""
    keras.utils.set_random_seed(seed)
    model = MODELS[name]()
    model.save(path)
    return path
