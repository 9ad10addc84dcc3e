"""Data for training loops: MNIST-format (IDX) files and a batch loader over them, and
ArrayLoader, batches of the user's own arrays; both matched bit for bit by c_runtime/ht_data.c,
which reads their batches in compiled training loops.

    >>> loader = MNIST(train=False, batch_size=64, limit=1000)      # Fashion-MNIST test split
    >>> len(loader), loader.count, (loader.rows, loader.cols)
    (16, 1000, (28, 28))
    >>> data, target = next(iter(loader))
    >>> tuple(data.shape), data.dtype, tuple(target.shape), target.dtype
    ((64, 1, 28, 28), torch.float32, (64,), torch.int64)
"""
import dataclasses
import functools
import gzip
import math
import os
import struct
import zlib

import numpy as np

from hytorch.errors import HyTorchError
from hytorch.rng import MASK64, SplitMix64

SYSTEM_ROOT = "/usr/share/datasets/fashion-mnist"
DEFAULT_ROOT = os.environ.get("HYTORCH_DATA") or SYSTEM_ROOT
HOW_TO_GET_DATA = (
    "install Fashion-MNIST with `apt-get install dataset-fashion-mnist`, "
    "or pass root=DIRECTORY (or set HYTORCH_DATA) to use MNIST-format files elsewhere"
)

IDX_UNSIGNED_BYTE = 0x08
_IDX_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
                   0x0D: "float32", 0x0E: "float64"}
_IDX_KINDS = {1: "IDX labels", 3: "IDX images"}
_CHUNK = 1 << 24


class DataError(HyTorchError, ValueError):
    """A data file that is missing, truncated or corrupt, or arrays that cannot be a data set;
    the message names the file or the argument."""


# ---------------------------------------------------------------------------------------------
# IDX files

def read_idx(path, ndim=None):
    """The array stored in an IDX file (raw or gzip, told apart by content), as uint8 with the header's shape.

    `ndim` (optional) is the number of dimensions the caller expects: 3 for images, 1 for labels.
    Raises DataError for a missing, truncated or corrupt file, or data that is not unsigned bytes.

        >>> read_idx(f"{SYSTEM_ROOT}/t10k-labels-idx1-ubyte.gz", ndim=1).shape
        (10000,)
    """
    path = os.fspath(path)
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot open: {error.strerror or error}") from None
    with file:
        gzipped = file.read(2) == b"\x1f\x8b"
        file.seek(0)
        stream = gzip.GzipFile(fileobj=file, mode="rb") if gzipped else file
        try:
            return _read_idx_stream(stream, path, ndim, gzipped)
        except (OSError, EOFError, zlib.error) as error:
            problem = "corrupt or truncated gzip data" if gzipped else "read error"
            raise DataError(f"{path}: {problem} ({error})") from None


def _read_idx_stream(stream, path, ndim, gzipped):
    holds = "the file holds {} bytes" + (" once decompressed" if gzipped else "")
    magic = _read_up_to(stream, 4)
    if len(magic) < 4:
        raise DataError(f"{path}: truncated header: an IDX file starts with a 4-byte magic number "
                        f"but {holds.format(len(magic))}")
    number = int.from_bytes(magic, "big")
    data_type, dims = magic[2], magic[3]
    bad_magic = DataError(f"{path}: bad magic number 0x{number:08x}, expected {_expected_magic(ndim)}")
    if magic[:2] != b"\0\0" or dims == 0:
        raise bad_magic
    if data_type != IDX_UNSIGNED_BYTE:
        name = _IDX_TYPE_NAMES.get(data_type, "unknown")
        raise DataError(f"{path}: IDX data type 0x{data_type:02x} ({name}) is not supported; "
                        f"only unsigned bytes (0x08) are")
    if ndim is not None and dims != ndim:
        raise bad_magic

    header_size = 4 + 4 * dims
    shape_bytes = _read_up_to(stream, 4 * dims)
    if len(shape_bytes) < 4 * dims:
        raise DataError(f"{path}: truncated header: magic 0x{number:08x} announces {dims} dimensions "
                        f"({header_size} header bytes) but {holds.format(4 + len(shape_bytes))}")
    shape = struct.unpack(f">{dims}I", shape_bytes)
    data_size = math.prod(shape)
    data = _read_up_to(stream, data_size)
    extra = _count_rest(stream) if len(data) == data_size else 0
    if len(data) < data_size or extra:
        # "Truncated" names the likely cause of a short file; extra bytes are as suspicious.
        what = "truncated" if len(data) < data_size else "longer than its header says"
        raise DataError(f"{path}: {what}: header says {_describe(shape)} ({header_size + data_size} bytes) "
                        f"but {holds.format(header_size + len(data) + extra)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _read_up_to(stream, size):
    """Up to `size` bytes, fewer only at end of file; grows with the data, so a corrupt header
    announcing terabytes fails as truncated rather than by allocating them."""
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(min(size - len(data), _CHUNK))
        if not chunk:
            break
        data += chunk
    return data


def _count_rest(stream):
    count = 0
    while chunk := stream.read(_CHUNK):
        count += len(chunk)
    return count


def _expected_magic(ndim):
    if ndim is None:
        return "0x000008NN (an IDX file of unsigned bytes with NN dimensions)"
    kind = _IDX_KINDS.get(ndim, f"IDX, {ndim} dimensions")
    return f"0x{0x800 + ndim:08x} ({kind})"


def _describe(shape):
    if len(shape) == 3:
        return f"{shape[0]} images of {shape[1]}x{shape[2]}"
    if len(shape) == 1:
        return f"{shape[0]} labels"
    return "shape " + "x".join(map(str, shape))


@functools.lru_cache(maxsize=4)
def _read_idx_cached(path, ndim, size, mtime_ns):
    # Keyed on size and mtime so a rewritten file is read again; read-only because loaders share it.
    array = read_idx(path, ndim)
    array.flags.writeable = False
    return array


def _read_split_file(path, ndim):
    status = os.stat(path)
    return _read_idx_cached(path, ndim, status.st_size, status.st_mtime_ns)


def find_split_file(root, name):
    """The path of `name` or `name`.gz in root (DataError naming root and how to get data if neither)."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    where = "no such directory" if not os.path.isdir(root) else f"no {name} or {name}.gz there"
    raise DataError(f"MNIST-format data not found in {root}: {where}; {HOW_TO_GET_DATA}")


# ---------------------------------------------------------------------------------------------
# The loader

def pixel_table(mean, std):
    """The float32 value of each byte p: (p / 255 - mean) / std, every step in float32 as in C.

        >>> pixel_table(0.0, 1.0)[255]
        np.float32(1.0)
    """
    mean32, std32 = np.float32(mean), np.float32(std)
    return (np.arange(256, dtype=np.float32) / np.float32(255.0) - mean32) / std32


@dataclasses.dataclass(frozen=True)
class CLoaderSpec:
    """What c_runtime/ht_data.h's ht_loader needs to read a loader's data; mean and std are
    already exact float32 values. The arrays are C-contiguous, the loader's own (not copies)."""
    images: np.ndarray  # the inputs: MNIST's uint8 [count, rows, cols], or float32 [count, ...]
    labels: np.ndarray  # the targets: MNIST's uint8 [count], or int64 / float32 [count, ...]
    count: int
    rows: int           # a sample's inputs are rows x cols values (an array's: 1 x its size)
    cols: int
    batch_size: int
    shuffle: bool
    drop_last: bool
    mean: float
    std: float
    rng_state: int


class BatchOrder:
    """The base of hytorch's data loaders (MNIST, ArrayLoader), which compiled training loops
    read in C: the order in which a loader's `count` samples come in batches: `len` batches an epoch,
    in order, or, with shuffle, in a fresh permutation each epoch drawn from SplitMix64 seeded by
    `seed` (as compiled code draws it, so eager and compiled epochs continue one stream)."""

    def _init_order(self, count, batch_size, shuffle, seed, drop_last):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
        self.count, self.batch_size = count, batch_size
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.rng = SplitMix64(seed)

    def __len__(self):
        full, rest = divmod(self.count, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def epoch_order(self):
        """The sample order of a new epoch: arange(count), shuffled in place with self.rng when shuffle."""
        order = np.arange(self.count, dtype=np.int64)
        if self.shuffle:
            self.rng.shuffle(order)
        return order

    def batch_slices(self, order):
        """The sample indices of each batch of an epoch in `order`."""
        stop = len(self) * self.batch_size
        return (order[start:start + self.batch_size] for start in range(0, stop, self.batch_size))

    def set_rng_state(self, state):
        """Continue from the state C left in the loader's rng, so eager epochs follow compiled ones."""
        self.rng.state = int(state) & MASK64

    def sample_types(self):
        """The shape and dtype of one sample's input and of its target in a batch, as compiled
        code reads them: ((input shape, "float32"), (target shape, "int64" or "float32"))."""
        raise NotImplementedError


class MNIST(BatchOrder):
    """Batches of an MNIST-format split as (data float32 [B,1,rows,cols], target int64 [B]) tensors.

    Like torchvision's MNIST with ToTensor() and Normalize(mean, std) in a DataLoader, but with its
    own shuffle (SplitMix64, seeded by `seed`) so compiled code can replay it: each iteration is
    an epoch, and with shuffle=True each epoch draws a fresh permutation from self.rng.
    `images` and `labels` are read-only: each file is read once per process and shared by loaders.

        >>> loader = MNIST(train=False, batch_size=100, shuffle=True, seed=1, limit=250)
        >>> [len(target) for data, target in loader]
        [100, 100, 50]
        >>> loader.num_classes
        10
    """

    def __init__(self, root=None, train=True, batch_size=1, shuffle=False, seed=0,
                 normalize=(0.1307, 0.3081), drop_last=False, limit=None):
        self._init_order(0, batch_size, shuffle, seed, drop_last)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be None or a non-negative integer, got {limit!r}")
        self.mean, self.std = (0.0, 1.0) if normalize is None else (float(normalize[0]), float(normalize[1]))
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and np.float32(self.std) != 0):
            raise ValueError(f"normalize needs a finite mean and a finite, non-zero std, got {normalize!r}")

        self.train = bool(train)
        self.normalize = None if normalize is None else (self.mean, self.std)
        self.root = os.fspath(root) if root is not None else os.environ.get("HYTORCH_DATA") or SYSTEM_ROOT
        split = "train" if train else "t10k"
        self.images_path = find_split_file(self.root, f"{split}-images-idx3-ubyte")
        self.labels_path = find_split_file(self.root, f"{split}-labels-idx1-ubyte")
        images = _read_split_file(self.images_path, 3)
        labels = _read_split_file(self.labels_path, 1)
        if len(images) != len(labels):
            raise DataError(f"{self.labels_path}: holds {len(labels)} labels but "
                            f"{self.images_path} holds {len(images)} images")

        self.images, self.labels = images[:limit], labels[:limit]
        self.count, self.rows, self.cols = self.images.shape
        self.num_classes = int(self.labels.max()) + 1 if self.count else 0
        self.pixel_table = pixel_table(self.mean, self.std)
        self._labels64 = self.labels.astype(np.int64)

    def sample_types(self):
        return ((1, self.rows, self.cols), "float32"), ((), "int64")

    def __repr__(self):
        return (f"MNIST({self.images_path!r}, count={self.count}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last})")

    def __iter__(self):
        """A new epoch of torch tensor batches (the permutation is drawn now, not at the first batch)."""
        import torch

        from_numpy = torch.from_numpy
        return ((from_numpy(x), from_numpy(y)) for x, y in self.batches_numpy())

    def batches_numpy(self):
        """A new epoch of (data float32 [B,1,rows,cols], target int64 [B]) numpy batches."""
        return self._batches(self.epoch_order())

    def _batches(self, order):
        table, images, size = self.pixel_table, self.images, self.batch_size
        targets = self._labels64[order]  # one gather per epoch; each batch's target is a fresh slice of it
        stop = len(self) * size
        if size == 1:  # the common eager case: plain int indexing is a view, so a single gather
            for start, sample in enumerate(order[:stop].tolist()):
                yield table.take(images[sample:sample + 1])[:, None], targets[start:start + 1]
            return
        for start in range(0, stop, size):
            yield table.take(images[order[start:start + size]])[:, None], targets[start:start + size]

    def c_spec(self):
        """Everything ht_loader needs, with the current rng state; see set_rng_state for the way back."""
        return CLoaderSpec(
            images=np.ascontiguousarray(self.images), labels=np.ascontiguousarray(self.labels),
            count=self.count, rows=self.rows, cols=self.cols, batch_size=self.batch_size,
            shuffle=self.shuffle, drop_last=self.drop_last,
            mean=float(np.float32(self.mean)), std=float(np.float32(self.std)), rng_state=self.rng.state)


class ArrayLoader(BatchOrder):
    """Batches of the user's own data: `inputs` [count, ...] and `targets` [count, ...], NumPy
    arrays or torch tensors, as (input batch, target batch) torch tensors, like a torch
    DataLoader over a TensorDataset but with its own shuffle (see BatchOrder). Floating data
    becomes float32 and integer (or bool) data int64, the types compiled code computes with, so
    NumPy's float64 arrays train a float32 model as they are. The loader keeps the arrays
    themselves when they are C-contiguous and of those types (one copy otherwise), and a
    compiled training loop reads its batches from them in C: float32 inputs, int64 targets
    (classes, for nll_loss / cross_entropy) or float32 ones (values, for mse_loss).

        >>> xs, ys = np.arange(12.0).reshape(6, 2), np.array([0, 1, 0, 1, 1, 0])
        >>> loader = ArrayLoader(xs, ys, batch_size=4)
        >>> [(tuple(x.shape), x.dtype, tuple(y.shape), y.dtype) for x, y in loader]
        [((4, 2), torch.float32, (4,), torch.int64), ((2, 2), torch.float32, (2,), torch.int64)]
    """

    def __init__(self, inputs, targets, batch_size=1, shuffle=False, seed=0, drop_last=False):
        self.inputs = _training_array(inputs, "inputs")
        self.targets = _training_array(targets, "targets")
        if len(self.inputs) != len(self.targets):
            raise DataError(f"inputs hold {len(self.inputs)} samples but targets hold "
                            f"{len(self.targets)}")
        self._init_order(len(self.inputs), batch_size, shuffle, seed, drop_last)

    def __repr__(self):
        return (f"ArrayLoader(inputs {list(self.inputs.shape)} {self.inputs.dtype}, targets "
                f"{list(self.targets.shape)} {self.targets.dtype}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last})")

    def __iter__(self):
        """A new epoch of torch tensor batches (the permutation is drawn now)."""
        import torch

        return ((torch.from_numpy(x), torch.from_numpy(y)) for x, y in self.batches_numpy())

    def batches_numpy(self):
        """A new epoch of (inputs, targets) NumPy batches, fresh arrays each."""
        for index in self.batch_slices(self.epoch_order()):
            yield self.inputs[index], self.targets[index]

    def sample_types(self):
        if self.inputs.dtype != np.float32:
            raise DataError(f"inputs hold {self.inputs.dtype} values; a compiled training loop "
                            "reads float32 inputs: give floating-point inputs")
        return ((self.inputs.shape[1:], "float32"),
                (self.targets.shape[1:], str(self.targets.dtype)))

    def c_spec(self):
        """Everything ht_loader needs (the arrays themselves), with the current rng state."""
        return CLoaderSpec(
            images=self.inputs, labels=self.targets, count=self.count, rows=1,
            cols=math.prod(self.inputs.shape[1:]), batch_size=self.batch_size,
            shuffle=self.shuffle, drop_last=self.drop_last, mean=0.0, std=1.0,
            rng_state=self.rng.state)


def _tensor_as_numpy(tensor, what):
    """A CPU tensor's memory as a NumPy array; a float type NumPy lacks (bfloat16) as float32."""
    try:
        return tensor.numpy()
    except TypeError:
        if tensor.is_floating_point():
            return tensor.float().numpy()
        raise DataError(f"{what} hold {tensor.dtype}, which is not a number type NumPy reads") \
            from None


def _training_array(data, what):
    """`data` (a NumPy array, a torch tensor or nested lists) as a C-contiguous float32 or
    int64 array: itself when it is one already (a tensor's memory as a NumPy array), else one
    copy. A DataError naming `what` for other element types, no samples or empty samples."""
    if hasattr(data, "detach") and hasattr(data, "cpu"):   # a torch tensor
        data = _tensor_as_numpy(data.detach().cpu(), what)
    try:
        array = np.asarray(data)
    except ValueError as error:   # ragged nested lists
        raise DataError(f"{what} are not an array: {error}") from None
    if array.ndim == 0:
        raise DataError(f"{what} need a first dimension: one row per sample")
    if len(array) == 0:
        raise DataError(f"{what} hold no samples (shape {list(array.shape)})")
    if array.size == 0:
        raise DataError(f"{what} hold empty samples (shape {list(array.shape)})")
    if array.dtype.kind == "f":
        return np.ascontiguousarray(array, dtype=np.float32)
    if array.dtype.kind in "iub":
        return np.ascontiguousarray(array, dtype=np.int64)
    raise DataError(f"{what} must hold numbers (float or integer), got {array.dtype}")
