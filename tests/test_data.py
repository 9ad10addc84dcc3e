"""IDX reading, the MNIST loader, and the C loader (c_runtime/ht_data.c) against it, bit for bit."""
import gzip
import os
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hytorch.data import MNIST, SYSTEM_ROOT, DataError, pixel_table, read_idx
from hytorch.rng import SplitMix64
from test_rng import runtime

IMAGES_MAGIC = 0x00000803


def idx_bytes(array, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x800 + array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write(path, content, gzipped=False):
    path.write_bytes(gzip.compress(content) if gzipped else content)
    return path


def make_split(root, images, labels, split="train", gzipped=True):
    suffix = ".gz" if gzipped else ""
    write(root / f"{split}-images-idx3-ubyte{suffix}", idx_bytes(images), gzipped)
    write(root / f"{split}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gzipped)
    return root


@pytest.fixture
def dataset(tmp_path):
    """23 random 5x4 images (every byte value appears) with labels 0..9, train split only."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(23, 5, 4), dtype=np.uint8)
    images.flat[:256] = np.arange(256)
    labels = rng.integers(0, 10, size=23, dtype=np.uint8)
    make_split(tmp_path, images, labels)
    return tmp_path, images, labels


def expected_data(images, mean=0.1307, std=0.3081):
    """ToTensor() then Normalize(mean, std), as torchvision computes them."""
    return (torch.tensor(images).float().div(255) - mean).div(std).numpy()[:, None]


# ---------------------------------------------------------------------------------------------
# read_idx

@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("shape", [(3, 5, 4), (7,), (2, 3), (0, 28, 28)])
def test_read_idx_raw_and_gzip(tmp_path, gzipped, shape):
    array = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = write(tmp_path / "data.idx", idx_bytes(array), gzipped)
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, array)


def test_read_idx_tells_gzip_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "plain.gz", idx_bytes(array))), array)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "packed.idx", idx_bytes(array), True)), array)


def test_read_idx_checks_the_expected_dimensions(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.zeros(4)))
    assert read_idx(path, ndim=1).shape == (4,)
    with pytest.raises(DataError, match=f"{path}: bad magic number 0x00000801, "
                                        r"expected 0x00000803 \(IDX images\)"):
        read_idx(path, ndim=3)


def data_error(path, **read_options):
    with pytest.raises(DataError) as caught:
        read_idx(path, **read_options)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message


def test_missing_file(tmp_path):
    assert data_error(tmp_path / "nothing-here") == f"{tmp_path / 'nothing-here'}: no such file"


@pytest.mark.parametrize("gzipped", [False, True])
def test_truncated_header(tmp_path, gzipped):
    short_magic = write(tmp_path / "a", b"\0\0", gzipped)
    assert "truncated header" in data_error(short_magic)
    short_shape = write(tmp_path / "b", idx_bytes(np.zeros((5, 4, 3)))[:9], gzipped)
    assert "truncated header: magic 0x00000803 announces 3 dimensions (16 header bytes) " \
           "but the file holds 9 bytes" in data_error(short_shape)


@pytest.mark.parametrize("gzipped", [False, True])
def test_truncated_data(tmp_path, gzipped):
    path = write(tmp_path / "images", idx_bytes(np.zeros((5, 4, 3)))[:40], gzipped)
    message = data_error(path, ndim=3)
    assert "truncated: header says 5 images of 4x3 (76 bytes) but the file holds 40 bytes" in message
    assert message.endswith("once decompressed") == gzipped


def test_corrupt_header_announcing_huge_sizes_fails_as_truncated(tmp_path):
    path = write(tmp_path / "huge", struct.pack(">IIII", IMAGES_MAGIC, 2**32 - 1, 2**32 - 1, 2**32 - 1))
    assert "truncated: header says 4294967295 images of 4294967295x4294967295" in data_error(path)


def test_extra_bytes(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.zeros(6)) + b"junk")
    assert "longer than its header says: header says 6 labels (14 bytes) but the file holds 18 bytes" \
        in data_error(path)


@pytest.mark.parametrize("magic", [0x00000000, 0x08030000, 0x12340803])
def test_bad_magic(tmp_path, magic):
    path = write(tmp_path / "images", idx_bytes(np.zeros((1, 2, 2)), magic=magic))
    assert f"bad magic number 0x{magic:08x}, expected 0x00000803 (IDX images)" in data_error(path, ndim=3)
    assert f"bad magic number 0x{magic:08x}, expected 0x000008NN" in data_error(path)


def test_unsupported_data_type(tmp_path):
    path = write(tmp_path / "floats", struct.pack(">II", 0x00000D01, 1) + b"\0\0\0\0")
    assert "IDX data type 0x0d (float32) is not supported" in data_error(path)


def test_corrupt_gzip(tmp_path):
    packed = bytearray(gzip.compress(idx_bytes(np.arange(4000, dtype=np.uint32).astype(np.uint8))))
    packed[len(packed) // 2:len(packed) // 2 + 8] = b"\xff" * 8
    assert "corrupt or truncated gzip data" in data_error(write(tmp_path / "flipped.gz", bytes(packed)))
    noise = np.random.default_rng(2).integers(0, 256, size=4000, dtype=np.uint8)
    truncated_stream = gzip.compress(idx_bytes(noise))[:2000]
    assert "corrupt or truncated gzip data" in data_error(write(tmp_path / "cut.gz", truncated_stream))


# ---------------------------------------------------------------------------------------------
# MNIST: files

def test_missing_directory_says_where_and_how_to_get_data(tmp_path):
    with pytest.raises(DataError) as caught:
        MNIST(root=tmp_path / "absent")
    message = str(caught.value)
    assert str(tmp_path / "absent") in message and "no such directory" in message
    assert "apt-get install dataset-fashion-mnist" in message and "root=" in message


def test_missing_split_file(dataset):
    root, _, _ = dataset
    with pytest.raises(DataError, match="no t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz there"):
        MNIST(root=root, train=False)


def test_label_and_image_counts_must_agree(tmp_path):
    make_split(tmp_path, np.zeros((4, 2, 2)), np.zeros(3), split="t10k", gzipped=False)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: holds 3 labels but .*t10k-images-idx3-ubyte "
                                        "holds 4 images"):
        MNIST(root=tmp_path, train=False)


def test_labels_file_with_images_magic_is_rejected(tmp_path):
    make_split(tmp_path, np.zeros((2, 2, 2)), np.zeros(2))
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros((2, 1, 1))), gzipped=True)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: bad magic number 0x00000803, "
                                        r"expected 0x00000801 \(IDX labels\)"):
        MNIST(root=tmp_path)


def test_root_from_environment(dataset, monkeypatch):
    root, images, _ = dataset
    monkeypatch.setenv("HYTORCH_DATA", str(root))
    assert MNIST().count == len(images)


def test_uncompressed_files_and_any_label_values(tmp_path):
    make_split(tmp_path, np.ones((3, 2, 2)), [0, 200, 7], gzipped=False)
    loader = MNIST(root=tmp_path, batch_size=3)
    assert loader.num_classes == 201
    assert next(iter(loader))[1].tolist() == [0, 200, 7]


def test_bad_arguments(dataset):
    root, _, _ = dataset
    for options in [dict(batch_size=0), dict(batch_size=2.0), dict(limit=-1), dict(normalize=(0.5, 0.0))]:
        with pytest.raises(ValueError):
            MNIST(root=root, **options)


# ---------------------------------------------------------------------------------------------
# MNIST: batches

def test_attributes(dataset):
    root, images, labels = dataset
    loader = MNIST(root=root, batch_size=4)
    assert (loader.count, loader.rows, loader.cols, loader.batch_size) == (23, 5, 4, 4)
    assert (loader.mean, loader.std, loader.shuffle, loader.drop_last) == (0.1307, 0.3081, False, False)
    assert loader.images.dtype == loader.labels.dtype == np.uint8 and loader.images.flags.c_contiguous
    np.testing.assert_array_equal(loader.images, images)
    np.testing.assert_array_equal(loader.labels, labels)
    assert loader.num_classes == int(labels.max()) + 1
    assert isinstance(loader.rng, SplitMix64) and loader.rng.state == 0


@pytest.mark.parametrize("batch_size,drop_last,sizes", [
    (1, False, [1] * 23), (4, False, [4] * 5 + [3]), (4, True, [4] * 5),
    (23, True, [23]), (30, False, [23]), (30, True, []),
])
def test_batch_sizes(dataset, batch_size, drop_last, sizes):
    root, _, _ = dataset
    loader = MNIST(root=root, batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == len(sizes)
    batches = list(loader)
    assert [len(target) for _, target in batches] == sizes
    for data, target in batches:
        assert data.dtype == torch.float32 and data.shape == (len(target), 1, 5, 4)
        assert target.dtype == torch.int64 and data.is_contiguous()


@pytest.mark.parametrize("normalize", [(0.1307, 0.3081), (0.2860, 0.3530), None])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_values_in_order_without_shuffle(dataset, normalize, batch_size):
    root, images, labels = dataset
    loader = MNIST(root=root, batch_size=batch_size, normalize=normalize)
    data = torch.cat([x for x, _ in loader]).numpy()
    target = torch.cat([y for _, y in loader]).numpy()
    mean, std = normalize or (0.0, 1.0)
    np.testing.assert_array_equal(data, expected_data(images, mean, std))
    np.testing.assert_array_equal(target, labels)
    if normalize is None:
        np.testing.assert_array_equal(data[:, 0], images.astype(np.float32) / np.float32(255))


def test_pixel_table_is_the_float32_formula():
    table = pixel_table(0.1307, 0.3081)
    direct = (np.arange(256, dtype=np.float32) / np.float32(255.0) - np.float32(0.1307)) / np.float32(0.3081)
    assert table.dtype == np.float32
    np.testing.assert_array_equal(table, direct)
    np.testing.assert_allclose(table, (np.arange(256) / 255 - 0.1307) / 0.3081, rtol=1e-6, atol=1e-6)


def test_limit_uses_the_first_samples(dataset):
    root, images, labels = dataset
    loader = MNIST(root=root, batch_size=4, limit=10)
    assert (loader.count, len(loader)) == (10, 3)
    np.testing.assert_array_equal(torch.cat([y for _, y in loader]).numpy(), labels[:10])
    assert MNIST(root=root, limit=100).count == 23
    assert len(MNIST(root=root, limit=0)) == 0


def epoch_targets(loader):
    return torch.cat([y for _, y in loader]).tolist()


def test_shuffle_is_deterministic_by_seed_and_fresh_each_epoch(dataset):
    root, _, labels = dataset
    a, b, c = (MNIST(root=root, batch_size=4, shuffle=True, seed=seed) for seed in (7, 7, 8))
    epochs_a = [epoch_targets(a) for _ in range(3)]
    assert epochs_a == [epoch_targets(b) for _ in range(3)]
    assert epochs_a != [epoch_targets(c) for _ in range(3)]
    assert epochs_a[0] != epochs_a[1] != epochs_a[2]
    assert all(sorted(epoch) == sorted(labels.tolist()) for epoch in epochs_a)


def test_shuffled_order_is_the_rng_permutation(dataset):
    root, images, labels = dataset
    loader = MNIST(root=root, batch_size=5, shuffle=True, seed=3)
    reference = SplitMix64(3)
    for _ in range(2):
        order = reference.shuffle(list(range(23)))
        data = torch.cat([x for x, _ in loader]).numpy()
        np.testing.assert_array_equal(data, expected_data(images[order]))
        assert loader.rng.state == reference.state


def test_permutation_is_drawn_when_iteration_starts(dataset):
    root, _, _ = dataset
    loader = MNIST(root=root, shuffle=True)
    iter(loader)
    assert loader.rng.state != 0


def test_batches_are_independent_of_the_dataset(dataset):
    root, _, labels = dataset
    loader = MNIST(root=root, batch_size=4)
    for data, target in loader:
        data.zero_()
        target.fill_(99)
    np.testing.assert_array_equal(loader.labels, labels)
    assert epoch_targets(loader) == labels.tolist()


def test_c_spec_and_rng_hand_back(dataset):
    root, images, labels = dataset
    loader = MNIST(root=root, batch_size=7, shuffle=True, seed=11, drop_last=True)
    spec = loader.c_spec()
    assert (spec.count, spec.rows, spec.cols, spec.batch_size) == (23, 5, 4, 7)
    assert (spec.shuffle, spec.drop_last, spec.rng_state) == (True, True, 11)
    assert spec.mean == float(np.float32(0.1307)) and spec.std == float(np.float32(0.3081))
    assert spec.images.flags.c_contiguous and spec.labels.flags.c_contiguous
    np.testing.assert_array_equal(spec.images, images)
    np.testing.assert_array_equal(spec.labels, labels)
    loader.set_rng_state(2**64 + 5)
    assert loader.rng.state == 5


# ---------------------------------------------------------------------------------------------
# The C loader

@pytest.fixture(scope="module")
def c():
    return runtime()


class CLoader:
    """An ht_loader built from MNIST.c_spec(), yielding batches like MNIST.batches_numpy()."""

    def __init__(self, c, spec, order=None):
        self.ffi, self.lib = c
        self.spec = spec
        self.struct = self.ffi.new("ht_loader *")
        self.keep = [self.ffi.from_buffer("uint8_t[]", spec.images), self.ffi.from_buffer("uint8_t[]", spec.labels)]
        s = self.struct
        s.images, s.labels = self.keep
        s.count, s.rows, s.cols, s.batch_size = spec.count, spec.rows, spec.cols, spec.batch_size
        s.shuffle, s.drop_last, s.mean, s.std, s.rng = spec.shuffle, spec.drop_last, spec.mean, spec.std, spec.rng_state
        if order is not None:
            s.order = self.ffi.from_buffer("int64_t[]", order)
        self.status = self.lib.ht_loader_init(s)

    def epoch(self):
        self.lib.ht_loader_begin_epoch(self.struct)
        size, pixels = self.spec.batch_size, self.spec.rows * self.spec.cols
        for batch in range(self.lib.ht_loader_len(self.struct)):
            x = np.full((size, 1, self.spec.rows, self.spec.cols), np.nan, dtype=np.float32)
            y = np.full(size, -1, dtype=np.int64)
            n = self.lib.ht_loader_fill(self.struct, batch, self.ffi.from_buffer("float[]", x),
                                        self.ffi.from_buffer("int64_t[]", y))
            assert np.isnan(x[n:]).all() and (y[n:] == -1).all() and pixels > 0
            yield x[:n], y[:n]

    def release(self):
        self.lib.ht_loader_release(self.struct)


def assert_same_epoch(python_batches, c_batches):
    python_batches, c_batches = list(python_batches), list(c_batches)
    assert len(python_batches) == len(c_batches)
    for (px, py), (cx, cy) in zip(python_batches, c_batches):
        assert px.shape == cx.shape
        np.testing.assert_array_equal(px.view(np.uint32), cx.view(np.uint32))
        np.testing.assert_array_equal(py, cy)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [False, True])
def test_c_batches_equal_python_batches(c, tmp_path, batch_size, shuffle, drop_last):
    rng = np.random.default_rng(batch_size)
    images = rng.integers(0, 256, size=(150, 6, 5), dtype=np.uint8)
    make_split(tmp_path, images, rng.integers(0, 256, size=150, dtype=np.uint8))
    loader = MNIST(root=tmp_path, batch_size=batch_size, shuffle=shuffle, seed=batch_size, drop_last=drop_last)
    c_loader = CLoader(c, loader.c_spec())
    assert c_loader.status == 0 and c_loader.struct.owns_order == 1
    assert c_loader.lib.ht_loader_len(c_loader.struct) == len(loader)
    for _ in range(3):
        assert_same_epoch(loader.batches_numpy(), c_loader.epoch())
        assert c_loader.struct.rng == loader.rng.state
    c_loader.release()
    assert c_loader.struct.order == c_loader.ffi.NULL


@pytest.mark.parametrize("normalize", [(0.1307, 0.3081), (0.2860, 0.3530), (0.5, 0.5), None])
def test_c_pixel_table_equals_python(c, dataset, normalize):
    root, _, _ = dataset
    loader = MNIST(root=root, normalize=normalize)
    c_loader = CLoader(c, loader.c_spec())
    c_table = np.frombuffer(c_loader.ffi.buffer(c_loader.struct.pixel_table), dtype=np.float32)
    np.testing.assert_array_equal(c_table.view(np.uint32), loader.pixel_table.view(np.uint32))
    c_loader.release()


def filled_pixels(c, images, mean, std):
    """(x, pixel_formula) of one batch of all of `images` (uint8 [n, rows, cols]) filled by
    an ht_loader normalising with mean and std."""
    ffi, lib = c
    n, rows, cols = images.shape
    labels = np.zeros(n, dtype=np.uint8)
    loader = ffi.new("ht_loader *")
    keep = [ffi.from_buffer("uint8_t[]", images), ffi.from_buffer("uint8_t[]", labels)]
    loader.images, loader.labels = keep
    loader.count, loader.rows, loader.cols, loader.batch_size = n, rows, cols, n
    loader.mean, loader.std = mean, std
    assert lib.ht_loader_init(loader) == 0, ffi.string(lib.ht_last_error())
    x, y = np.full(images.shape, np.nan, dtype=np.float32), np.zeros(n, dtype=np.int64)
    rows = lib.ht_loader_fill(loader, 0, ffi.from_buffer("float[]", x), ffi.from_buffer("int64_t[]", y))
    assert rows == n
    lib.ht_loader_release(loader)
    return x, loader.pixel_formula


# Images holding every byte value equally often, shuffled: of 28 x 28 (whole vectors) and of
# 5 x 3 (a tail past the last whole vector on every vector unit).
IMAGES = [np.random.default_rng(0).permutation(np.resize(np.arange(256, dtype=np.uint8), 256 * k))
          .reshape(shape) for k, shape in [(49, (16, 28, 28)), (15, (256, 5, 3))]]


@pytest.mark.parametrize("normalize", [(0.1307, 0.3081), (0.2860, 0.3530), (0.5, 0.5), (0.0, 1.0)])
def test_common_normalisations_take_the_vector_formula(c, normalize):
    for images in IMAGES:
        x, formula = filled_pixels(c, images, *normalize)
        assert formula == 1
        expected = pixel_table(*normalize)[images]
        np.testing.assert_array_equal(x.view(np.uint32), expected.view(np.uint32))


FINITE_FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(mean=st.floats(-1e3, 1e3, width=32) | FINITE_FLOAT32,
       std=(st.floats(2.0**-13, 1e4, width=32) | FINITE_FLOAT32).filter(lambda s: s != 0),
       negative=st.booleans())
def test_filled_pixels_are_the_pixel_tables_bits(c, mean, std, negative):
    """By the vector formula where ht_loader_init found it exact, else through the table."""
    std = -std if negative else std
    with np.errstate(all="ignore"):  # extreme normalisations overflow to infinities
        for images in IMAGES:
            x, _ = filled_pixels(c, images, mean, std)
            expected = pixel_table(mean, std)[images]
            np.testing.assert_array_equal(x.view(np.uint32), expected.view(np.uint32))


def test_a_normalisation_the_formula_misses_goes_through_the_table(c):
    mean, std = 1.3464413235314688e+16, -1.9075747288445534e-24  # found by a search
    with np.errstate(all="ignore"):
        for images in IMAGES:
            x, formula = filled_pixels(c, images, mean, std)
            assert formula == 0
            expected = pixel_table(mean, std)[images]
            np.testing.assert_array_equal(x.view(np.uint32), expected.view(np.uint32))


def test_eager_and_compiled_epochs_continue_one_stream(c, dataset):
    root, _, _ = dataset
    mixed, pure = (MNIST(root=root, batch_size=4, shuffle=True, seed=21) for _ in range(2))
    pure_epochs = [list(pure.batches_numpy()) for _ in range(3)]

    assert_same_epoch(mixed.batches_numpy(), pure_epochs[0])
    c_loader = CLoader(c, mixed.c_spec())
    assert_same_epoch(c_loader.epoch(), pure_epochs[1])
    mixed.set_rng_state(c_loader.struct.rng)
    assert_same_epoch(mixed.batches_numpy(), pure_epochs[2])
    assert mixed.rng.state == pure.rng.state
    c_loader.release()


def test_c_loader_uses_a_callers_order_and_leaves_it_to_the_caller(c, dataset):
    root, _, _ = dataset
    loader = MNIST(root=root, batch_size=5, shuffle=True, seed=2)
    order = np.full(loader.count, -1, dtype=np.int64)
    c_loader = CLoader(c, loader.c_spec(), order=order)
    assert c_loader.status == 0 and c_loader.struct.owns_order == 0
    np.testing.assert_array_equal(order, np.arange(loader.count))
    assert_same_epoch(loader.batches_numpy(), c_loader.epoch())
    np.testing.assert_array_equal(order, SplitMix64(2).shuffle(np.arange(loader.count)))
    c_loader.release()
    assert sorted(order) == list(range(loader.count))


def test_c_fill_out_of_range_writes_nothing(c, dataset):
    root, _, _ = dataset
    c_loader = CLoader(c, MNIST(root=root, batch_size=10).c_spec())
    ffi, lib = c_loader.ffi, c_loader.lib
    x, y = np.zeros(10 * 20, dtype=np.float32), np.zeros(10, dtype=np.int64)
    for batch in (-1, 3, 100):
        assert lib.ht_loader_fill(c_loader.struct, batch, ffi.from_buffer("float[]", x),
                                  ffi.from_buffer("int64_t[]", y)) == 0
    assert not x.any() and not y.any()
    c_loader.release()


@pytest.mark.parametrize("field,value,message", [
    ("batch_size", 0, "batch_size must be at least 1, got 0"),
    ("std", 0.0, "non-zero std; got mean=0.1307 std=0"),
    ("mean", float("nan"), "finite mean"),
    ("rows", 0, "bad shape: 23 samples of 0x4"),
    ("count", -1, "bad shape: -1 samples"),
])
def test_c_init_rejects_bad_fields(c, dataset, field, value, message):
    root, _, _ = dataset
    ffi, lib = c
    spec = MNIST(root=root).c_spec()
    c_loader = CLoader(c, spec)
    c_loader.release()
    setattr(c_loader.struct, field, value)
    assert lib.ht_loader_init(c_loader.struct) == 1
    assert message in ffi.string(lib.ht_last_error()).decode()


def test_c_init_rejects_missing_arrays(c, dataset):
    root, _, _ = dataset
    ffi, lib = c
    c_loader = CLoader(c, MNIST(root=root).c_spec())
    c_loader.release()
    c_loader.struct.labels = ffi.NULL
    assert lib.ht_loader_init(c_loader.struct) == 1
    assert ffi.string(lib.ht_last_error()).decode() == "data loader: 23 samples but no labels array"


# ---------------------------------------------------------------------------------------------
# The real data

@pytest.mark.parametrize("train,count,first_labels", [
    (True, 60000, [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]),
    (False, 10000, [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]),
])
def test_fashion_mnist_splits(train, count, first_labels):
    loader = MNIST(root=SYSTEM_ROOT, train=train, batch_size=1000)
    assert (loader.count, loader.rows, loader.cols) == (count, 28, 28)
    assert loader.images.shape == (count, 28, 28) and loader.labels.shape == (count,)
    assert loader.labels[:10].tolist() == first_labels
    assert np.bincount(loader.labels).tolist() == [count // 10] * 10
    assert loader.num_classes == 10 and len(loader) == count // 1000
    assert os.path.basename(loader.images_path) == ("train" if train else "t10k") + "-images-idx3-ubyte.gz"


def test_fashion_mnist_c_batches_equal_python_batches(c):
    loader = MNIST(root=SYSTEM_ROOT, train=False, batch_size=64, shuffle=True, seed=5, limit=2000)
    c_loader = CLoader(c, loader.c_spec())
    for _ in range(2):
        assert_same_epoch(loader.batches_numpy(), c_loader.epoch())
    first_x, first_y = next(iter(MNIST(root=SYSTEM_ROOT, train=False, batch_size=64, limit=64)))
    np.testing.assert_array_equal(first_x.numpy(), expected_data(loader.images[:64]))
    c_loader.release()
