"""HDF5 volume layout (DiffAE3D) and the reader transformers in pipelines."""

import pickle

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.pipeline import FunctionTransformer, make_pipeline

from sklearn_disentangle.io import (
    HDF5Error, HDF5VolumeReader, MRCReader, ParticleStack, ReaderError, StarReader, write_mrc,
)
from sklearn_disentangle.io.hdf5 import (
    HDF5VolumeDataset, list_hdf5_volumes, normalise_volume, read_hdf5_volume, write_hdf5_volumes,
)


@pytest.fixture
def h5file(tmp_path):
    rng = np.random.default_rng(0)
    vols = {
        "1001/20208/2_0/primary_LAX_4Ch_transverse_0": rng.uniform(0, 50, (1, 3, 2, 8, 8)),
        "1001/20208/2_0/auxiliary_T1": rng.uniform(0, 5, (1, 1, 2, 8, 8)),
        "1002/20208/2_0/primary_LAX_4Ch_transverse": rng.uniform(10, 20, (1, 3, 2, 8, 8)),
        "1002/20209/3_0/primary": rng.uniform(0, 1, (1, 3, 2, 8, 8)) * np.exp(1j),  # complex series
    }
    path = tmp_path / "data.h5"
    write_hdf5_volumes(path, vols, attrs={"1002/20208/2_0/primary_LAX_4Ch_transverse": {"min_val": 0.0,
                                                                                         "max_val": 40.0}},
                       group_attrs={"1001/20208/2_0": {"studyDesc": "CMR"}})
    with h5py.File(path, "a") as fh:  # a mask dataset and a series without the attributes
        fh["1001/20208/2_0"].create_dataset("meta_mask", data=np.ones((1, 3, 2, 8, 8)))
        ds = fh.create_dataset("1003/20208/2_0/primary", data=np.full((1, 3, 2, 8, 8), 4.0))
        assert "min_val" not in ds.attrs
    return path, vols


def test_listing_and_selection(h5file):
    path, _ = h5file
    assert list_hdf5_volumes(path) == ["1001/20208/2_0/primary_LAX_4Ch_transverse_0",
                                       "1002/20208/2_0/primary_LAX_4Ch_transverse", "1002/20209/3_0/primary",
                                       "1003/20208/2_0/primary"]
    sel = list_hdf5_volumes(path, ["LAX_4Ch_transverse"])  # prefix added, trailing _0 accepted
    assert sel == ["1001/20208/2_0/primary_LAX_4Ch_transverse_0", "1002/20208/2_0/primary_LAX_4Ch_transverse"]
    assert list_hdf5_volumes(path, ["auxiliary_T1"]) == ["1001/20208/2_0/auxiliary_T1"]


def test_attributes_and_normalisation_modes(h5file):
    path, vols = h5file
    key = "1002/20208/2_0/primary_LAX_4Ch_transverse"
    raw = vols[key]
    np.testing.assert_allclose(read_hdf5_volume(path, key), raw, rtol=1e-6)
    np.testing.assert_allclose(read_hdf5_volume(path, key, normalisation="minmax"),
                               (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    np.testing.assert_allclose(read_hdf5_volume(path, key, normalisation="divbymax"), raw / raw.max(), atol=1e-6)
    np.testing.assert_allclose(read_hdf5_volume(path, key, normalisation="minmaxvol"), raw / 40.0, atol=1e-6)
    np.testing.assert_allclose(read_hdf5_volume(path, key, normalisation="divbymaxvol"), raw / 40.0, atol=1e-6)
    complex_key = "1002/20209/3_0/primary"
    np.testing.assert_allclose(read_hdf5_volume(path, complex_key), np.abs(vols[complex_key]), rtol=1e-6)
    with h5py.File(path) as fh:
        assert fh["1001/20208/2_0"].attrs["studyDesc"] == "CMR"
        assert fh[complex_key].attrs["max_val"] == pytest.approx(np.abs(vols[complex_key]).max())


def test_volumetric_modes_need_attributes(h5file):
    path, _ = h5file
    with pytest.raises(HDF5Error, match=r"data\.h5.*1003/20208/2_0/primary.*min_val and max_val"):
        read_hdf5_volume(path, "1003/20208/2_0/primary", normalisation="minmaxvol")
    assert read_hdf5_volume(path, "1003/20208/2_0/primary", normalisation="divbymax").max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normalisation"):
        normalise_volume(np.zeros(3), "zscore")


def test_lazy_dataset_pickles(h5file):
    path, vols = h5file
    ds = HDF5VolumeDataset(path, keys=["LAX_4Ch_transverse"], normalisation=None)
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == 2
    np.testing.assert_allclose(clone[1], vols["1002/20208/2_0/primary_LAX_4Ch_transverse"], rtol=1e-6)
    with pytest.raises(HDF5Error, match="no series"):
        HDF5VolumeDataset(path, keys=["SAX"])


def test_bad_hdf5_files(tmp_path, h5file):
    with pytest.raises(FileNotFoundError, match="none.h5"):
        list_hdf5_volumes(tmp_path / "none.h5")
    path, _ = h5file
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(HDF5Error, match=r"cut\.h5"):
        list_hdf5_volumes(truncated)
    with h5py.File(tmp_path / "4d.h5", "w") as fh:
        fh.create_dataset("1/2/3/primary", data=np.zeros((2, 3, 4, 5)))
    with pytest.raises(HDF5Error, match=r"4d\.h5.*5-D"):
        list_hdf5_volumes(tmp_path / "4d.h5")
    with pytest.raises(HDF5Error, match="no dataset"):
        read_hdf5_volume(path, "9/9/9/primary")
    with pytest.raises(ValueError, match="5-D"):
        write_hdf5_volumes(tmp_path / "w.h5", {"1/2/3/primary": np.zeros((3, 3))})
    assert not (tmp_path / "w.h5").exists()


def test_hdf5_reader_in_a_pipeline(h5file):
    path, _ = h5file
    reader = HDF5VolumeReader(keys=["LAX_4Ch_transverse"], normalisation="minmax")
    pipe = make_pipeline(reader, FunctionTransformer(lambda v: v.reshape(len(v), -1)), PCA(1))
    assert pipe.fit_transform(str(path)).shape == (2, 1)
    assert reader.list_items(path)[0] == (str(path), "1001/20208/2_0/primary_LAX_4Ch_transverse_0")
    assert reader.__sklearn_tags__().requires_fit is False


def test_mrc_and_star_readers(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((6, 8, 8)).astype(np.float32)
    write_mrc(tmp_path / "a.mrcs", images[:4], pixel_size=2.0)
    write_mrc(tmp_path / "b.mrcs", images[4:], pixel_size=2.0)
    paths = pd.DataFrame({"path": [str(tmp_path / "a.mrcs"), str(tmp_path / "b.mrcs")]})
    np.testing.assert_array_equal(MRCReader().fit_transform(paths), images)
    write_mrc(tmp_path / "v.mrc", images[:4])
    assert MRCReader(kind="volume").transform([tmp_path / "v.mrc", tmp_path / "v.mrc"]).shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="mix"):
        MRCReader().transform([tmp_path / "a.mrcs", tmp_path / "v.mrc"])
    with pytest.raises(TypeError):
        MRCReader().transform([3])
    ParticleStack.from_mrcs([tmp_path / "a.mrcs", tmp_path / "b.mrcs"]).to_star(tmp_path / "p.star")
    stack = StarReader().transform([tmp_path / "p.star", tmp_path / "p.star"])
    assert isinstance(stack, ParticleStack) and len(stack) == 12
    np.testing.assert_array_equal(stack[6:].get_images(), images)
    with pytest.raises(ReaderError):
        StarReader().transform(tmp_path / "a.mrcs")
