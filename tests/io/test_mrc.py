"""MRC reading and writing on generated files: kinds, axis order, compression, atomicity, damage."""

import os
import warnings

import mrcfile
import numpy as np
import pytest

from sklearn_disentangle.io import MRCError, ReaderError, ReaderWarning, read_mrc, write_mrc
from sklearn_disentangle.io.mrc import mrc_stack_writer, read_mrc_header


@pytest.fixture
def volume():
    return np.random.default_rng(0).standard_normal((6, 7, 8)).astype(np.float32)


@pytest.mark.parametrize("name", ["v.mrc", "v.map", "v.mrc.gz", "v.mrc.bz2"])
def test_volume_round_trip(tmp_path, volume, name):
    path = tmp_path / name
    write_mrc(path, volume, pixel_size=2.5, origin=(1.0, 2.0, 3.0))
    data, info = read_mrc(path)
    np.testing.assert_array_equal(data, volume)
    assert info.kind == "volume" and info.pixel_size == 2.5 and info.origin == (1.0, 2.0, 3.0)
    assert info.compressed == {"v.mrc": None, "v.map": None, "v.mrc.gz": "gzip", "v.mrc.bz2": "bzip2"}[name]
    if info.compressed is None:
        assert isinstance(data, np.memmap)  # memory-mapped by default


def test_stack_vs_volume_by_extension_not_ispg(tmp_path, volume):
    # a stack written with a volume space group, and a volume with the stack space group
    stack_path, vol_path = tmp_path / "s.mrcs", tmp_path / "v.mrc"
    with mrcfile.new(stack_path) as m:
        m.set_data(volume)
        m.set_volume()  # ispg 1, like empiar_10076_7
    with mrcfile.new(vol_path) as m:
        m.set_data(volume)
        m.set_image_stack()  # ispg 0, like spike-vol.mrc
    assert read_mrc(stack_path)[1].kind == "stack"
    assert read_mrc(vol_path)[1].kind == "volume"
    assert read_mrc(vol_path, kind="stack")[1].kind == "stack"
    with pytest.raises(MRCError, match="kind='image'"):
        read_mrc(vol_path, kind="image")


def test_written_stack_has_stack_space_group(tmp_path, volume):
    write_mrc(tmp_path / "s.mrcs", volume)
    write_mrc(tmp_path / "v.mrc", volume)
    with mrcfile.open(tmp_path / "s.mrcs") as m:
        assert m.is_image_stack()
    with mrcfile.open(tmp_path / "v.mrc") as m:
        assert m.is_volume()


def test_single_image(tmp_path):
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_mrc(tmp_path / "i.mrc", img)
    data, info = read_mrc(tmp_path / "i.mrc")
    assert info.kind == "image" and data.shape == (3, 4)
    np.testing.assert_array_equal(data, img)


@pytest.mark.parametrize("order", [(2, 1, 3), (3, 2, 1), (2, 3, 1), (1, 3, 2)])
def test_axis_order_is_applied(tmp_path, volume, order):
    """A file stored with mapc/mapr/maps != 1,2,3 reads back in (z, y, x) order."""
    mapc, mapr, maps = order
    # file axes are (sections, rows, cols) = dims (maps, mapr, mapc); dims 1=x (axis 2), 2=y, 3=z
    axis_of_dim = {1: 2, 2: 1, 3: 0}
    stored = np.ascontiguousarray(volume.transpose([axis_of_dim[maps], axis_of_dim[mapr], axis_of_dim[mapc]]))
    path = tmp_path / "o.mrc"
    with mrcfile.new(path) as m:
        m.set_data(stored)
        m.header.mapc, m.header.mapr, m.header.maps = mapc, mapr, maps
    data, info = read_mrc(path)
    assert info.axis_order == order
    np.testing.assert_array_equal(data, volume)


def test_pixel_size_zero_means_unknown_and_explicit_wins(tmp_path, volume):
    path = tmp_path / "p.mrcs"
    with mrcfile.new(path) as m:
        m.set_data(volume)
        m.voxel_size = 0.0
    assert read_mrc(path)[1].pixel_size is None
    assert read_mrc(path, pixel_size=1.31)[1].pixel_size == 1.31


def test_permissive_warnings_are_collected_into_one(tmp_path, volume):
    path = tmp_path / "bad.mrcs"
    write_mrc(path, volume)
    with open(path, "r+b") as fh:  # blank the MAP id and the machine stamp, as real files have
        fh.seek(208)
        fh.write(b"\x00" * 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data, info = read_mrc(path)
    ours = [w for w in caught if issubclass(w.category, ReaderWarning)]
    assert len(ours) == 1 and str(path) in str(ours[0].message) and "Map ID" in str(ours[0].message)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    np.testing.assert_array_equal(data, volume)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mrc"):
        read_mrc(tmp_path / "nope.mrc")


def test_truncated_file_names_file(tmp_path, volume):
    path = tmp_path / "t.mrcs"
    write_mrc(path, volume)
    with open(path, "r+b") as fh:
        fh.truncate(1024 + 100)
    with pytest.raises(MRCError, match=r"t\.mrcs.*truncated"):
        read_mrc(path)


def test_corrupt_header_names_file(tmp_path, volume):
    path = tmp_path / "c.mrc"
    write_mrc(path, volume)
    with open(path, "r+b") as fh:
        fh.seek(12)
        fh.write(np.int32(99).tobytes())  # unknown mode
    with pytest.raises(ReaderError, match=r"c\.mrc"):
        read_mrc(path)
    with open(tmp_path / "short.mrc", "wb") as fh:
        fh.write(b"\x01\x02")
    with pytest.raises(ReaderError, match=r"short\.mrc"):
        read_mrc(tmp_path / "short.mrc")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, volume):
    path = tmp_path / "a.mrc"
    write_mrc(path, volume)
    with pytest.raises(ValueError):
        write_mrc(path, np.zeros((2, 2, 2, 2)))  # invalid data: nothing replaced
    np.testing.assert_array_equal(read_mrc(path)[0], volume)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mrc"]
    with pytest.raises(FileExistsError):
        write_mrc(path, volume, overwrite=False)


def test_stack_writer_is_atomic(tmp_path):
    path = tmp_path / "big.mrcs"
    with pytest.raises(RuntimeError):
        with mrc_stack_writer(path, 4, 8) as out:
            out[:2] = 1.0
            raise RuntimeError("interrupted")
    assert not os.listdir(tmp_path)
    with mrc_stack_writer(path, 4, 8, pixel_size=1.5) as out:
        out[:] = 3.0
    data, info = read_mrc(path)
    assert info.kind == "stack" and info.pixel_size == 1.5 and float(data.min()) == 3.0


def test_int16_and_big_endian_data(tmp_path):
    data = np.arange(2 * 4 * 4, dtype=np.int16).reshape(2, 4, 4)
    write_mrc(tmp_path / "i.mrcs", data)
    back, info = read_mrc(tmp_path / "i.mrcs")
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, data)
    big = tmp_path / "be.mrcs"
    with mrcfile.new(big) as m:
        m.set_data(np.arange(32, dtype=">f4").reshape(2, 4, 4))
    header = read_mrc_header(big)
    assert header.dtype.byteorder == ">"
    np.testing.assert_array_equal(read_mrc(big)[0], np.arange(32).reshape(2, 4, 4))


def test_extended_header_is_skipped(tmp_path, volume):
    """Data start after 1024 + nsymbt bytes (cryoDRGN's star path assumed 1024)."""
    from sklearn_disentangle.io import ParticleStack

    path = tmp_path / "ext.mrcs"
    with mrcfile.new(path) as m:
        m.set_data(volume)
        m.set_extended_header(np.arange(100, dtype=np.int32))
    data, info = read_mrc(path)
    assert info.data_offset == 1024 + 400
    np.testing.assert_array_equal(data, volume)
    square = volume[:, :7, :7].copy()
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(square)
        m.set_extended_header(np.arange(100, dtype=np.int32))
    np.testing.assert_array_equal(ParticleStack.from_mrcs(path)[[5, 1]].get_images(), square[[5, 1]])
