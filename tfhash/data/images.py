"""Image folders: a subfolder of images per class, optionally under train/ and test/ (Pillow, no TF).

Two layouts are read:

    (a) root/<class>/<image>              every item pooled; `test_start` is None
    (b) root/train/<class>/<image>        train/ items first, then test/ items;
        root/test/<class>/<image>         `test_start` is the index of the first test item

A folder holding both train/ and test/ subfolders is read as layout (b). Files
ending in `IMAGE_EXTENSIONS` (any case) count as images; other files, files
at the top level, folders nested inside a class folder and hidden entries
(names starting with ".") are ignored.
"""

import concurrent.futures
import dataclasses
import math
import os

import numpy as np
from PIL import Image

from tfhash.checks import check_positive_int, check_row_index
from tfhash.files import available_memory

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
# Single-channel modes; "I" and "I;16*" hold 16-bit values and are scaled to 8 bits.
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N"})
RESAMPLE = Image.Resampling.BILINEAR
PIXEL_MAX = 255.0  # a white pixel of the uint8 arrays read here
_CHUNK = 128  # files per thread-pool task
_PARALLEL_MIN = 64  # fewer files are decoded in the calling thread


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFolder:
    """The images of a folder, decoded to one uint8 array.

    Attributes:
        images: uint8 (n, H, W) when every file is grey, else (n, H, W, 3) RGB.
        class_ids: int64 (n,), indices into `class_names`.
        class_names: sorted class folder names; class id c is `class_names[c]`.
        test_start: index of the first test/ item in layout (b); None in layout (a).
        files: paths relative to the folder, "/"-separated, in item order.
    """

    images: np.ndarray = dataclasses.field(repr=False)
    class_ids: np.ndarray = dataclasses.field(repr=False)
    class_names: list
    test_start: int | None
    files: list = dataclasses.field(repr=False)

    def __len__(self):
        return len(self.files)


def _entries(folder, dirs):
    """Sorted names of the visible subfolders (dirs=True) or image files (dirs=False)."""
    with os.scandir(folder) as entries:
        if dirs:
            names = [e.name for e in entries if not e.name.startswith(".") and e.is_dir()]
        else:
            names = [
                e.name
                for e in entries
                if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()
            ]
    return sorted(names)


def _has_image(folder):
    with os.scandir(folder) as entries:
        return any(
            not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()
            for e in entries
        )


def _splits(path):
    """Returns ("",) for layout (a) or SPLITS for layout (b); raises a ValueError otherwise."""
    if not os.path.isdir(path):
        raise ValueError(
            f"{path} is not a folder; pass a folder holding one subfolder of images per class "
            "(or train/ and test/ subfolders laid out that way)"
        )
    subfolders = _entries(path, dirs=True)
    if not set(SPLITS) <= set(subfolders):
        return ("",)
    extra = sorted(set(subfolders) - set(SPLITS))
    if extra:
        raise ValueError(
            f"{path} holds train/ and test/, so it is read as a train/test image folder, but also "
            f"{extra}; move those folders out or into train/ and test/"
        )
    return SPLITS


def _classes(path, splits):
    """Sorted class names, the same under every split; raises a ValueError otherwise."""
    names = {}
    for split in splits:
        folder = os.path.join(path, split)
        names[split] = _entries(folder, dirs=True)
        if not names[split]:
            raise ValueError(
                f"{folder} has no class subfolders; put the images of each class in a subfolder "
                "named after the class"
            )
    if len(splits) == 2 and names["train"] != names["test"]:
        train, test = set(names["train"]), set(names["test"])
        raise ValueError(
            f"{path}: train/ and test/ must hold the same class folders; only in train/: "
            f"{sorted(train - test)}, only in test/: {sorted(test - train)}"
        )
    return names[splits[0]]


def _empty_class(folder):
    return ValueError(
        f"class folder {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); "
        "add images or remove the folder"
    )


def _scan(path):
    """Lists the items: (files relative to `path`, class_ids, class_names, test_start)."""
    splits = _splits(path)
    class_names = _classes(path, splits)
    files, class_ids, test_start = [], [], None
    for split in splits:
        if split == "test":
            test_start = len(files)
        for class_id, name in enumerate(class_names):
            folder = os.path.join(path, split, name)
            names = _entries(folder, dirs=False)
            if not names:
                raise _empty_class(folder)
            prefix = f"{split}/{name}/" if split else f"{name}/"
            files.extend(prefix + file for file in names)
            class_ids.extend([class_id] * len(names))
    return files, np.asarray(class_ids, np.int64), class_names, test_start


def check_image_folder(path):
    """Raises the ValueError that names why `path` is not an image folder (an empty class folder,
    train/ and test/ with different classes, no class folders); returns None for a good one."""
    _scan(path)


def is_image_folder(path):
    """Whether `path` is laid out as an image folder (see the module docstring).

    Cheap: no image is decoded and each class folder is read only up to its
    first image file. True means every class folder holds an image and, in
    layout (b), train/ and test/ hold the same classes.
    """
    try:
        splits = _splits(path)
        class_names = _classes(path, splits)
    except (ValueError, OSError):
        return False
    return all(_has_image(os.path.join(path, split, name)) for split in splits for name in class_names)


def _check_image_size(image_size):
    """Returns `image_size` as (H, W), or raises a ValueError."""
    try:
        height, width = image_size
        return check_positive_int("height", height), check_positive_int("width", width)
    except (TypeError, ValueError):
        raise ValueError(
            f"image_size must be two positive ints (height, width); received image_size={image_size!r}"
        ) from None


def _not_decodable(file, err):
    if isinstance(err, Image.DecompressionBombError):
        return ValueError(
            f"{file} is too large to decode safely ({err}); raise PIL.Image.MAX_IMAGE_PIXELS if you "
            "trust the file"
        )
    return ValueError(
        f"{file} cannot be decoded ({type(err).__name__}: {err}); it is corrupt or not an image. "
        "Replace or delete it."
    )


def _is_grey(image):
    """Whether an opened (not decoded) image is single-channel: a grey mode or a grey palette."""
    if image.mode in ("P", "PA"):
        palette = np.asarray(image.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
        return bool(np.all(palette == palette[:, :1]))
    return image.mode in GREY_MODES


def _header(file):
    """(is grey, (H, W)) of a file, from its header only."""
    try:
        with Image.open(file) as image:
            return _is_grey(image), (image.height, image.width)
    except MemoryError:
        raise
    except Exception as err:  # Pillow raises many types for broken files
        raise _not_decodable(file, err) from None


def _to_8bit(image):
    """Decodes an image to "L" (grey files) or "RGB" (colour files); alpha is dropped."""
    grey = _is_grey(image)
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # Pillow warns when such palettes go straight to RGB or L
    if not grey:
        return image if image.mode == "RGB" else image.convert("RGB")
    if image.mode.startswith("I"):  # 16-bit grey: 0..65535 -> 0..255, rounded
        values = np.clip(np.asarray(image, np.int64), 0, 65535)
        return Image.fromarray(((values + 128) // 257).astype(np.uint8))
    return image if image.mode == "L" else image.convert("L")


def _decode(file, size, out):
    """Decodes `file`, resized to `size` (H, W) if it differs, into `out` (H, W) or (H, W, 3)."""
    try:
        with Image.open(file) as image:
            image = _to_8bit(image)
            if image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), RESAMPLE)
            pixels = np.asarray(image)
    except MemoryError:
        raise
    except Exception as err:  # Pillow raises many types for broken files
        raise _not_decodable(file, err) from None
    out[...] = pixels[..., None] if pixels.ndim < out.ndim else pixels  # grey file in a colour array


def _run(task, n, workers):
    """Calls task(i) for i in range(n), spread over `workers` threads when n is large."""
    if workers == 1 or n < _PARALLEL_MIN:
        for i in range(n):
            task(i)
        return

    def chunk(start):
        for i in range(start, min(start + _CHUNK, n)):
            task(i)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(chunk, start) for start in range(0, n, _CHUNK)]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def common_size(sizes):
    """The (H, W) most files have (the first in item order among equally common ones): the default
    size of a folder, so that one odd file (a 9000 x 9000 image among 32 x 32 ones) is shrunk to the
    set's size instead of every image being blown up to its own."""
    values, first, counts = np.unique(sizes, axis=0, return_index=True, return_counts=True)
    best = np.flatnonzero(counts == counts.max())
    pick = best[np.argmin(first[best])]
    return int(values[pick][0]), int(values[pick][1])


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFiles:
    """Image files not yet decoded, and the array they decode to: what a worker of
    `--engine beam` decodes a slice of, so that the launching process reads no pixel. Picklable;
    indexing (a slice or an index array) gives the files of the index, so a `Split` can hold
    them as its `images`.

    Attributes:
        paths: the files, in item order.
        shape: of the decoded array: (n, H, W) when every file of the folder is grey, else
            (n, H, W, 3).
    """

    paths: tuple
    shape: tuple
    dtype = np.dtype(np.uint8)

    def __len__(self):
        return len(self.paths)

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, index):
        index = check_row_index(index, "ImageFiles")
        if isinstance(index, slice):
            paths = self.paths[index]
        else:
            paths = tuple(self.paths[i] for i in index.tolist())
        return ImageFiles(paths, (len(paths), *self.shape[1:]))

    def decode(self, workers=1):
        """The uint8 array of the files (see `read_image_folder` for how each file is decoded)."""
        images = np.empty(self.shape, np.uint8)
        _run(lambda i: _decode(self.paths[i], self.shape[1:3], images[i]), len(self.paths), workers)
        return images


def scan_image_folder(path, image_size=None, workers=2):
    """The items of an image folder without decoding them: (`ImageFiles`, class_ids,
    class_names, test_start, files), the first in item order with the shape `read_image_folder`
    decodes them to. Only the files' headers are read (for the default size and grey or colour)."""
    workers = check_positive_int("workers", workers)
    size = None if image_size is None else _check_image_size(image_size)
    files, class_ids, class_names, test_start = _scan(path)
    paths = tuple(os.path.join(path, file) for file in files)
    grey = np.empty(len(paths), bool)
    sizes = np.empty((len(paths), 2), np.int64)

    def read_header(i):
        grey[i], sizes[i] = _header(paths[i])

    _run(read_header, len(paths), workers)
    size = size or common_size(sizes)
    shape = (len(paths), *size) if grey.all() else (len(paths), *size, 3)
    return ImageFiles(paths, shape), class_ids, class_names, test_start, files


def read_image_folder(path, image_size=None, workers=2):
    """Reads an image folder (layout (a) or (b), see the module docstring) into memory.

    Items are ordered class by class (classes sorted by name) and by file name
    within a class; in layout (b) all train/ items come before all test/ items.
    The output is grey (n, H, W) only when every file is grey: modes "1", "L",
    "LA" (alpha dropped), 16-bit "I"/"I;16" (scaled by 255/65535) and palette
    images whose palette is grey. Otherwise it is RGB (n, H, W, 3): grey files
    are replicated to three channels, RGBA and LA lose their alpha (it is not
    composited), palette, CMYK and YCbCr files are converted by Pillow.

    Args:
        path: the folder.
        image_size: (H, W) to resize every image to; None: the size most files
            have (`common_size`).
        workers: decoding threads (Pillow releases the GIL while decoding and
            resizing); small folders are decoded in the calling thread.

    Returns:
        An `ImageFolder`.

    Raises:
        ValueError: `path` is not an image folder, a class folder is empty,
            train/ and test/ classes differ, a file cannot be decoded, or
            `image_size` / `workers` is invalid.

    Notes:
        Images are stretched to (H, W) (the aspect ratio is not kept) with
        Pillow's BILINEAR filter, whose support widens with the shrink factor,
        so shrinking averages every source pixel (antialiased, like
        torchvision's Resize on PIL images) rather than aliasing as a
        2-tap bilinear sample would. Files already at (H, W) are not resampled
        and keep their exact pixels. EXIF orientation is ignored, as in
        `tf.io.decode_image`. Memory is the final uint8 array plus one decoded
        image per thread.
    """
    items, class_ids, class_names, test_start, files = scan_image_folder(path, image_size, workers)
    shape = items.shape
    needed, available = math.prod(shape), available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"{path}: {len(items)} images of shape {shape[1:]} need {needed / 2**30:.1f} GiB, more than "
            f"the {available / 2**30:.1f} GiB of memory available; pass a smaller --image-size"
        )
    try:
        images = items.decode(workers)
    except MemoryError:
        raise ValueError(
            f"{path}: {len(items)} images of shape {shape[1:]} need {needed / 2**30:.1f} GiB; "
            "pass a smaller image_size"
        ) from None
    return ImageFolder(images, class_ids, class_names, test_start, files)


__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFiles",
    "ImageFolder",
    "check_image_folder",
    "is_image_folder",
    "read_image_folder",
    "scan_image_folder",
]
