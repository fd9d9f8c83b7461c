"""HDF5 series to model input, latents to emb.h5/TSV (IDs kept), fold CSVs as a scikit-learn splitter."""

import os

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from sklearn_disentangle import DiffAE3D
from sklearn_disentangle.datasets import make_cardiac_volumes
from sklearn_disentangle.diffae import (
    DiffAEVolumeReader,
    FoldCSVSplit,
    crop_or_pad,
    inverse_normal_transform,
    make_folds,
    read_fold_csv,
    read_latents,
    write_fold_csv,
    write_latents,
)
from sklearn_disentangle.io.hdf5 import write_hdf5_volumes


@pytest.fixture
def cardiac_h5(tmp_path):
    path = tmp_path / "data.h5"
    data = make_cardiac_volumes(6, n_frames=8, n_slices=1, size=16, path=path, random_state=0)
    return path, data


def test_reader_arranges_time_as_depth_in_minus_one_to_one(cardiac_h5):
    path, data = cardiac_h5
    reader = DiffAEVolumeReader()
    X = reader.fit_transform(path)
    assert X.shape == (6, 1, 8, 16, 16) and X.dtype == np.float32
    with h5py.File(path) as fh:
        key = data.hdf5_keys[0]
        lo, hi = float(fh[key].attrs["min_val"]), float(fh[key].attrs["max_val"])
    expected = 2 * (data.volumes[0, :, :, 0] - lo) / (hi - lo + 1e-8) - 1  # minmaxvol then [0,1] -> [-1,1]
    np.testing.assert_allclose(X[0], expected, atol=1e-5)
    assert reader.subject_ids(path) == [k.split("/")[0] for k in data.hdf5_keys]
    unit = DiffAEVolumeReader(normalisation="minmax", output_range=None).fit_transform(path)
    assert unit.min() == 0.0 and np.isclose(unit.max(), 1.0)


def test_reader_layouts_crop_and_errors(tmp_path):
    path = tmp_path / "data.h5"
    write_hdf5_volumes(path, {"1/20209/2_0/primary": np.random.rand(1, 1, 6, 10, 12),
                              "2/20209/2_0/primary": np.random.rand(1, 1, 6, 10, 12)})
    vol = DiffAEVolumeReader(layout="slice_as_depth", shape=(8, 8, 8)).fit_transform(path)
    assert vol.shape == (2, 1, 8, 8, 8)
    assert np.all(vol[:, :, 0] == -1.0)  # depth 6 padded to 8 with the background value
    with pytest.raises(ValueError, match="one slice"):
        DiffAEVolumeReader(layout="time_as_depth").fit_transform(path)
    with pytest.raises(ValueError, match="one time point and one slice"):
        DiffAEVolumeReader(layout="image").fit_transform(path)
    with pytest.raises(ValueError, match="normalisation"):
        DiffAEVolumeReader(normalisation=None).fit_transform(path)
    with pytest.raises(ValueError, match="layout"):
        DiffAEVolumeReader(layout="4d").fit_transform(path)
    with pytest.raises(ValueError, match="shape must have 3"):
        DiffAEVolumeReader(layout="slice_as_depth", shape=(8, 8)).fit_transform(path)


def test_crop_or_pad_is_centred():
    x = np.arange(6.0).reshape(1, 6)
    np.testing.assert_array_equal(crop_or_pad(x, (4,)), [[1, 2, 3, 4]])
    np.testing.assert_array_equal(crop_or_pad(x, (9,), fill=-1), [[-1, 0, 1, 2, 3, 4, 5, -1, -1]])
    with pytest.raises(ValueError):
        crop_or_pad(x, (1, 2, 3))


def test_latents_round_trip_through_emb_h5_and_tsv_keep_the_ids(cardiac_h5, tmp_path):
    path, _ = cardiac_h5
    reader = DiffAEVolumeReader()
    X = reader.fit_transform(path)
    keys = [k for _, k in reader.list_items(path)]
    est = DiffAE3D.from_preset("tiny", max_epochs=1, inplane_only=False, random_state=0).fit(X)
    Z = est.transform(X)
    h5, tsv = tmp_path / "out" / "emb.h5", tmp_path / "out" / "latents.tsv"
    h5.parent.mkdir()
    write_latents(Z, keys, h5_path=h5, tsv_path=tsv)
    Z_back, keys_back = read_latents(h5)
    assert keys_back == keys
    np.testing.assert_array_equal(Z_back, Z)
    with h5py.File(h5) as fh:
        assert fh[keys[0]].shape == (1, 1, 1, est.z_dim)  # the paper's (channel, time, slice, latent) layout
    table = pd.read_csv(tsv, sep="\t", dtype={"FID": str, "IID": str})
    assert list(table.columns[:3]) == ["FID", "IID", "Z0"] and table.shape == (6, 2 + est.z_dim)
    assert table["IID"].tolist() == reader.subject_ids(path) == table["FID"].tolist()
    np.testing.assert_allclose(table.iloc[:, 2:].to_numpy(), Z, rtol=1e-6, atol=1e-7)
    assert sorted(os.listdir(h5.parent)) == ["emb.h5", "latents.tsv"]  # no temporary files left


def test_write_latents_errors_leave_existing_files_untouched(tmp_path):
    tsv = tmp_path / "z.tsv"
    tsv.write_text("keep")
    keys = ["1/20208/2_0/primary", "1/20208/3_0/primary"]
    with pytest.raises(ValueError, match="several series"):
        write_latents(np.ones((2, 2)), keys, tsv_path=tsv)
    assert tsv.read_text() == "keep"
    with pytest.raises(ValueError, match="one key per row"):
        write_latents(np.ones((3, 2)), keys, h5_path=tmp_path / "e.h5")
    with pytest.raises(ValueError, match="patientID/fieldID"):
        write_latents(np.ones((1, 2)), ["1/primary"], h5_path=tmp_path / "e.h5")
    with pytest.raises(ValueError, match="unique"):
        write_latents(np.ones((2, 2)), [keys[0], keys[0]], h5_path=tmp_path / "e.h5")
    with pytest.raises(ValueError, match="NaN"):
        write_latents(np.full((1, 2), np.nan), keys[:1], h5_path=tmp_path / "e.h5")
    with pytest.raises(ValueError, match="nothing to write"):
        write_latents(np.ones((1, 2)), keys[:1])
    assert sorted(os.listdir(tmp_path)) == ["z.tsv"]
    write_latents(np.ones((2, 2)), keys, h5_path=tmp_path / "e.h5")  # several visits are fine in emb.h5
    assert read_latents(tmp_path / "e.h5")[1] == keys


def test_inverse_normal_transform_is_rank_based():
    z = np.array([[3.0, 10.0], [1.0, 30.0], [2.0, 20.0], [100.0, 40.0]])
    out = inverse_normal_transform(z)
    np.testing.assert_array_equal(np.argsort(out[:, 0]), np.argsort(z[:, 0]))
    np.testing.assert_allclose(out[:, 0], out[[1, 2, 0, 3], 0][[2, 0, 1, 3]])
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(np.sort(out[:, 0]), np.sort(out[:, 1]))  # outliers do not matter


def test_fold_csv_round_trip_uses_literal_lists(tmp_path):
    ids = [str(1000 + i) for i in range(20)]
    folds = make_folds(ids, n_folds=5, train_size=0.6, val_size=0.1, random_state=1701)
    assert [len(f["train"]) for f in folds] == [12] * 5 and [len(f["val"]) for f in folds] == [2] * 5
    assert all(sorted(f["train"] + f["val"] + f["test"]) == ids for f in folds)
    assert folds[0]["test"] != folds[1]["test"]  # independent reshuffles, not a partition
    assert make_folds(ids, n_folds=5) == folds  # seeded with 1701 by default
    path = tmp_path / "5folds_60Trn_10Val_30Tst_1701seed.csv"
    write_fold_csv(folds, path)
    raw = pd.read_csv(path)
    assert list(raw.columns) == ["train", "val", "test"] and raw.loc[0, "train"].startswith("['")
    assert read_fold_csv(path) == folds


def test_fold_csv_rejects_code_and_bad_layouts(tmp_path):
    path = tmp_path / "evil.csv"
    path.write_text('train,test\n"__import__(\'os\').getcwd()","[]"\n')
    with pytest.raises(ValueError, match="list literal"):
        read_fold_csv(path)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="'train' and 'test'"):
        read_fold_csv(path)
    with pytest.raises(FileNotFoundError):
        read_fold_csv(tmp_path / "missing.csv")


def test_splitter_maps_subject_ids_to_rows(tmp_path):
    folds = [{"train": ["a", "b"], "val": ["c"], "test": ["d", "zz"]},
             {"train": ["d", "c"], "val": [], "test": ["a"]}]
    ids = ["a", "b", "c", "d", "a", "e"]  # subject "a" has two series, "e" is in no list
    X = np.zeros((6, 2))
    cv = FoldCSVSplit(folds, subject_ids=ids)
    assert cv.get_n_splits() == 2
    (tr0, te0), (tr1, te1) = list(cv.split(X))
    assert tr0.tolist() == [0, 1, 2, 4] and te0.tolist() == [3]
    assert tr1.tolist() == [2, 3] and te1.tolist() == [0, 4]
    (tr, te), _ = list(FoldCSVSplit(folds, val="test").split(X, groups=ids))
    assert te.tolist() == [2, 3]
    (tr, te), _ = list(FoldCSVSplit(folds, val="drop").split(X, groups=ids))
    assert tr.tolist() == [0, 1, 4]
    assert len(list(FoldCSVSplit(folds, fold_ids=[1]).split(X, groups=ids))) == 1
    with pytest.raises(ValueError, match="subject ID of every row"):
        next(FoldCSVSplit(folds).split(X))
    with pytest.raises(ValueError, match="0 training"):
        next(FoldCSVSplit(folds).split(X, groups=[str(i) for i in range(6)]))
    with pytest.raises(ValueError, match="6 rows"):
        next(FoldCSVSplit(folds).split(X, groups=ids[:3]))
    with pytest.raises(ValueError, match="not folds"):
        FoldCSVSplit(folds, fold_ids=[5]).get_n_splits()
    with pytest.raises(TypeError, match="fold CSV path"):
        FoldCSVSplit(42).get_n_splits()


def test_splitter_in_cross_val_score_with_a_diffae_pipeline(cardiac_h5, tmp_path):
    path, data = cardiac_h5
    reader = DiffAEVolumeReader()
    X, ids = reader.fit_transform(path), reader.subject_ids(path)
    csv = tmp_path / "folds.csv"
    write_fold_csv(make_folds(ids, n_folds=2, train_size=0.5, val_size=0.0), csv)
    pipe = make_pipeline(DiffAE3D.from_preset("tiny", max_epochs=1, inplane_only=False, random_state=0), Ridge())
    scores = cross_val_score(pipe, X, data.factors["radius"].to_numpy(), groups=ids, cv=FoldCSVSplit(csv))
    assert scores.shape == (2,) and np.isfinite(scores).all()
    # the same folds as plain row indices
    splits = list(FoldCSVSplit(csv).split(X, groups=ids))
    assert all(len(tr) == 3 and len(te) == 3 and not set(tr) & set(te) for tr, te in splits)


def test_every_public_name_has_an_example():
    import inspect

    import sklearn_disentangle.diffae as pkg

    for name in pkg.__all__:
        obj = getattr(pkg, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert "Examples\n--------" in (inspect.getdoc(obj) or ""), name
