"""Model architectures, one building function each, in a small registry (as timm does).

Every model takes raw pixel values 0-255 shaped (48, 48, 1) and returns softmax probabilities over
`spec.CLASSES`. Normalization, and for the ImageNet networks the grayscale-to-RGB and size adaptation,
are layers inside the model, so training, export, the edge runtime and an app can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fer_train.spec import CHANNELS, CLASSES, IMAGE_SIZE

INPUT_NAME = "pixels"
# The cnn's three 2x poolings need at least 8 pixels across after --downsample: 48 / 6 = 8.
MAX_DOWNSAMPLE = IMAGE_SIZE // 8


@dataclass(frozen=True)
class Arch:
    build: Callable
    summary: str


def build_cnn(
    width: float = 1.0,
    first_kernel: int = 5,
    dense_units: int = 128,
    dropout_scale: float = 1.0,
    standardize: bool = True,
    inference_blur: float = 0.0,
    downsample: int = 1,
    num_classes: int = len(CLASSES),
    name: str = "fer_cnn",
):
    """The custom Conv2D network: three blocks of two Conv2D-BatchNorm-ELU, MaxPool and Dropout, then Dense.

    At width 1.0 with 5x5 kernels in the first block it is the seed network (2.4 M parameters, 71% on
    FER2013 as reported). `width` scales every filter count, so a smaller variant trains on a CPU;
    `first_kernel=3` removes most of the first block's cost at 48x48. `dropout_scale` multiplies every
    dropout rate: a narrower network needs less regularization to learn in few epochs. `standardize`
    adds per-face standardization after the 0-1 rescaling. `inference_blur` (a Gaussian sigma in
    pixels) blurs faces at inference only, for training data blurrier than what the model will see.
    `downsample` average-pools the face by that factor before the convolutions: for blurred faces
    it loses nothing, and 24x24 trains and runs ~4x faster than 48x48 at the same width.
    """
    import keras
    from keras import layers

    def filters(n: int) -> int:
        return max(8, int(round(n * width / 8)) * 8)

    def conv(x, n: int, k: int):
        # BatchNorm sits between the convolution and ELU so that the TFLite converter folds it into the
        # convolution: one op instead of three on the device, and int8 quantization sees no separate
        # per-channel scale after a non-linearity (with ELU first, the seed's order, int8 lost accuracy).
        x = layers.Conv2D(filters(n), k, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
        x = layers.BatchNormalization()(x)
        return layers.ELU()(x)

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, CHANNELS), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    if inference_blur:
        from fer_train.layers import InferenceBlur

        x = InferenceBlur(inference_blur, name="inference_blur")(x)
    if not 1 <= downsample <= MAX_DOWNSAMPLE:
        raise ValueError(f"downsample must be 1 to {MAX_DOWNSAMPLE} (the face must stay 8 pixels or more)")
    if downsample > 1:
        x = layers.AveragePooling2D(downsample, name="downsample")(x)
    if standardize:
        # Per-face standardization (zero mean, unit variance over the face) makes the network blind to
        # a face's brightness and contrast. FER2013's training faces here have markedly lower contrast
        # than its test faces (median per-face std 38 against 54), and cameras vary more still.
        x = layers.LayerNormalization(
            axis=[1, 2, 3], center=False, scale=False, epsilon=1e-3, name="standardize"
        )(x)
    for n, k, drop in ((64, first_kernel, 0.4), (128, 3, 0.4), (256, 3, 0.5)):
        x = conv(x, n, k)
        x = conv(x, n, k)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(drop * dropout_scale)(x)
    x = layers.Flatten()(x)
    units = filters(dense_units) if width < 1 else dense_units
    x = layers.Dense(units, use_bias=False, kernel_initializer="he_normal")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ELU()(x)
    x = layers.Dropout(0.6 * dropout_scale)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def with_flip_tta(model, name: str | None = None):
    """The same model averaging its answers on the face and on its mirror image (flip test-time
    augmentation), as one graph: exported, every runtime and app get TTA without code of their own.
    The weights are shared, so the file barely grows; the work per face doubles."""
    import keras
    from keras import layers, ops

    inputs = keras.Input(model.input_shape[1:], name=INPUT_NAME)
    mirrored = ops.flip(inputs, axis=2)
    averaged = layers.Average(name="flip_tta")([model(inputs), model(mirrored)])
    return keras.Model(inputs, averaged, name=name or model.name)


def inference_blur_of(model) -> float:
    """The sigma of `model`'s inference blur, 0.0 when it has none."""
    from fer_train.layers import InferenceBlur

    return next((layer.sigma for layer in model.layers if isinstance(layer, InferenceBlur)), 0.0)


def with_inference_blur(model, sigma: float):
    """The same model and weights with its inference blur set to `sigma` (the blur has no weights)."""
    import keras

    from fer_train.layers import InferenceBlur

    def clone(layer):
        if isinstance(layer, InferenceBlur):
            return InferenceBlur(sigma, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    blurred = keras.models.clone_model(model, clone_function=clone)
    blurred.set_weights(model.get_weights())
    return blurred


def _imagenet_backbone(
    application, min_size: int, to_rgb_layer, weights: str | None, num_classes: int, name: str
):
    """Wrap a keras.applications network: gray 0-255 in, the network's own input convention inside."""
    import keras
    from keras import layers

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, CHANNELS), name=INPUT_NAME)
    x = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    if min_size > IMAGE_SIZE:
        x = layers.Resizing(min_size, min_size, name="resize")(x)
    x = to_rgb_layer(x)
    size = max(min_size, IMAGE_SIZE)
    backbone = application(include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")
    if weights:
        backbone.load_weights(weights)
    x = backbone(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def build_vgg16(weights: str | None = None, num_classes: int = len(CLASSES), name: str = "fer_vgg16"):
    """VGG16 from keras.applications; `weights` is a local no-top weights file (caffe-style input)."""
    import keras
    from keras import layers

    # VGG16's ImageNet weights expect BGR-ordered pixels minus the ImageNet mean; gray makes order moot.
    caffe = layers.Normalization(mean=[103.939, 116.779, 123.68], variance=[1.0, 1.0, 1.0], name="normalize")
    return _imagenet_backbone(keras.applications.VGG16, 32, caffe, weights, num_classes, name)


def build_inceptionv3(
    weights: str | None = None, num_classes: int = len(CLASSES), name: str = "fer_inceptionv3"
):
    """InceptionV3 from keras.applications at its minimum input size, 75x75; input scaled to [-1, 1]."""
    import keras
    from keras import layers

    scale = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")
    return _imagenet_backbone(keras.applications.InceptionV3, 75, scale, weights, num_classes, name)


ARCHS: dict[str, Arch] = {
    "cnn": Arch(build_cnn, "custom Conv2D/ELU/BatchNorm network with a width multiplier"),
    "vgg16": Arch(build_vgg16, "keras.applications VGG16, gray to RGB inside the model"),
    "inceptionv3": Arch(
        build_inceptionv3, "keras.applications InceptionV3, resized to 75x75 inside the model"
    ),
}


def build_model(arch: str, **options):
    """Build a registered architecture; `options` are that builder's keyword arguments."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHS)}")
    return ARCHS[arch].build(**options)


def load_model(path, compile: bool = True):
    """Load a .keras model saved by this package, with its custom layers registered first."""
    import keras

    import fer_train.layers  # noqa: F401 - registers InferenceBlur for deserialization

    return keras.models.load_model(path, compile=compile)
