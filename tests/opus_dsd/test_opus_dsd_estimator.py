"""OpusDSD estimator: fitting on ParticleStacks (from disk), outputs, errors, resume, sklearn behaviour.

sklearn's ``check_estimator`` feeds plain arrays, which OpusDSD rejects (it needs poses and
CTF); the sklearn behaviours that apply to particle stacks are tested here.
"""

import os
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sklearn_disentangle import OpusDSD
from sklearn_disentangle.datasets import make_cryoem_particles
from sklearn_disentangle.io import ParticleStack, StarReader, read_mrc, write_mrc


def tiny(**kw):
    return OpusDSD(**{**OpusDSD._tiny_params(), **kw})


@pytest.fixture(scope="module")
def particles():
    stack, truth = make_cryoem_particles(40, 16, n_conformations=2, snr=1.0, random_state=0)
    return stack, truth


@pytest.fixture(scope="module")
def on_disk(particles, tmp_path_factory):
    stack, _ = particles
    path = tmp_path_factory.mktemp("star") / "particles.star"
    stack.to_star(path)
    return StarReader().transform([str(path)]), path


@pytest.fixture(scope="module")
def fitted(on_disk):
    stack, _ = on_disk
    return tiny().fit(stack), stack


def test_fit_on_star_file_shapes_and_attributes(fitted):
    est, stack = fitted
    z = est.transform(stack)
    assert z.shape == (40, 2) and z.dtype == np.float32 and np.isfinite(z).all()
    vols = est.inverse_transform(z[:3])
    assert vols.shape == (3, 16, 16, 16) and vols.dtype == np.float32
    assert est.box_size_ == 16 and est.pixel_size_ == pytest.approx(4.0)
    assert (est.render_size_, est.crop_size_) == (16, 12)
    assert est.volume_pixel_size_ == pytest.approx(4.0)
    assert est.image_std_ > 0
    assert est.bank_.shape == (40, 2)
    row = est.history_[-1]
    for key in ("train_loss", "train_recon", "train_kl", "train_reg", "train_dsd", "train_snr", "beta", "bfactor"):
        assert np.isfinite(row[key]), key
    assert est.history_[0, "beta"] == pytest.approx(0.001 + 32 / 100000)  # 2 batches (16 + 16) before the last


def test_volumes_are_zero_outside_the_crop(fitted):
    est, stack = fitted
    vols = est.inverse_transform(est.transform(stack[:2]))
    assert np.abs(vols[:, 0]).max() == 0.0 and np.abs(vols[:, :, 0]).max() == 0.0  # padded margin
    assert np.abs(vols[:, 8, 8, 8]).max() > 0


def test_write_volumes_mrc_pixel_size(fitted, tmp_path):
    est, stack = fitted
    z = est.transform(stack[:2])
    paths = est.write_volumes(z, tmp_path / "vols", prefix="state")
    assert [os.path.basename(p) for p in paths] == ["state_000.mrc", "state_001.mrc"]
    data, info = read_mrc(paths[1])
    assert data.shape == (16, 16, 16) and info.pixel_size == pytest.approx(est.volume_pixel_size_)
    np.testing.assert_allclose(data, est.inverse_transform(z)[1], rtol=1e-6, atol=1e-7)
    assert not [f for f in os.listdir(tmp_path / "vols") if "tmp" in f]


def test_project_matches_images_scale_and_pose(fitted):
    est, stack = fitted
    z = est.transform(stack[:4])
    imgs = est.project(z, stack[:4])
    assert imgs.shape == (4, 16, 16) and imgs.dtype == np.float32 and np.isfinite(imgs).all()
    same = est.project(z, stack.rotations[:4], shifts=stack.shifts[:4], ctf=stack.ctf.iloc[:4])
    np.testing.assert_allclose(imgs, same, atol=1e-6)
    # without CTF and shift, the identity pose is the z-sum of the box volume (times the scale)
    vol = est.inverse_transform(z[:1])[0]
    flat = est.project(z[:1], np.eye(3)[None])[0]
    np.testing.assert_allclose(flat, vol.sum(0) * est.image_std_ * est.crop_size_ / est._box_extent, rtol=1e-4,
                               atol=1e-5 * np.abs(flat).max())
    with pytest.raises(ValueError, match="rotations must have shape"):
        est.project(z, np.eye(3)[None])


def test_training_streams_batches_from_disk(on_disk, monkeypatch):
    stack, _ = on_disk
    assert stack.sources[0] is not None  # images live in the .mrcs file
    sizes = []
    original = ParticleStack.get_images

    def spy(self, indices=None):
        out = original(self, indices)
        sizes.append(len(out))
        return out

    monkeypatch.setattr(ParticleStack, "get_images", spy)
    tiny(max_epochs=1, batch_size=8).fit(stack)
    # one read of (up to 1000) images for the normalisation, then batches of 8
    assert sizes[0] == 40 and max(sizes[1:]) == 8 and len(sizes) == 1 + 5


def test_same_seed_same_latents_and_score(on_disk):
    stack, _ = on_disk
    a, b = tiny(max_epochs=1).fit(stack), tiny(max_epochs=1).fit(stack)
    np.testing.assert_array_equal(a.transform(stack), b.transform(stack))
    assert a.score(stack) == b.score(stack) and np.isfinite(a.score(stack))


def test_bad_inputs_have_clear_errors(particles, tmp_path):
    stack, _ = particles
    with pytest.raises(TypeError, match="ParticleStack"):
        tiny().fit(stack.get_images())
    images = stack.get_images()
    no_pose = ParticleStack(images, pixel_size=4.0, ctf=stack.ctf)
    with pytest.raises(ValueError, match="no poses"):
        tiny().fit(no_pose)
    no_shift = ParticleStack(images, pixel_size=4.0, rotations=stack.rotations, ctf=stack.ctf)
    with pytest.raises(ValueError, match="no shifts"):
        tiny().fit(no_shift)
    no_ctf = ParticleStack(images, pixel_size=4.0, rotations=stack.rotations, shifts=stack.shifts)
    with pytest.raises(ValueError, match="no CTF"):
        tiny().fit(no_ctf)
    no_apix = ParticleStack(images, rotations=stack.rotations, shifts=stack.shifts, ctf=stack.ctf)
    with pytest.raises(ValueError, match="pixel size of the particles is unknown"):
        tiny().fit(no_apix)
    with pytest.raises(ValueError, match=r"mask has shape \(8, 8, 8\)"):
        tiny(mask=np.ones((8, 8, 8))).fit(stack)
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny(templateres=24).fit(stack)
    with pytest.raises(ValueError, match="downfrac"):
        tiny(downfrac=1.5).fit(stack)
    empty = ParticleStack(np.zeros((0, 16, 16)), pixel_size=4.0)
    with pytest.raises(ValueError, match="empty"):
        tiny().fit(empty)


def test_errors_after_fit(fitted):
    est, stack = fitted
    big, _ = make_cryoem_particles(4, 24, random_state=0)
    with pytest.raises(ValueError, match="fitted on 16 px"):
        est.transform(big)
    other = ParticleStack(stack.get_images()[:4], pixel_size=3.0, rotations=stack.rotations[:4],
                          shifts=stack.shifts[:4], ctf=stack.ctf.iloc[:4])
    with pytest.raises(ValueError, match="pixel size 3.0"):
        est.transform(other)
    with pytest.raises(ValueError, match="2 columns"):
        est.inverse_transform(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="the 40 particles of the first fit"):
        clone(est).fit(stack).partial_fit(stack[:10])


def test_mask_from_file_sets_window(particles, tmp_path):
    stack, _ = particles
    mask = np.zeros((16, 16, 16), np.float32)
    mask[3:13, 3:13, 3:13] = 1.0
    path = tmp_path / "mask.mrc"
    write_mrc(path, mask, pixel_size=4.0)
    est = tiny(max_epochs=1, mask=str(path)).fit(stack)
    assert est.window_r_ == pytest.approx(min((16 - 6 + 4) / 16, 0.9))
    assert est.crop_size_ == 14
    assert est.transform(stack).shape == (40, 2)


def test_checkpoint_resume_continues_history_and_schedule(on_disk, tmp_path):
    stack, _ = on_disk
    ckpt = tmp_path / "ckpt"
    first = tiny(max_epochs=1, checkpoint_dir=str(ckpt)).fit(stack)
    assert {"params.pt", "optimizer.pt", "history.json"} <= set(os.listdir(ckpt))
    resumed = tiny(max_epochs=1, checkpoint_dir=str(ckpt), warm_start=True).fit(stack)
    assert len(resumed.history_) == 2
    # the cyclic beta continues from the images seen in the first run (40 images = 3 batches)
    cb = dict(resumed.net_.callbacks_)["opus_schedule"]
    assert cb.n_images_ == 80
    # the memory bank came back from the checkpoint, then moved on
    assert not np.allclose(resumed.bank_, tiny(max_epochs=1).fit(stack).bank_)
    assert first.bank_.shape == resumed.bank_.shape


def test_validation_fraction_reports_valid_terms(on_disk):
    stack, _ = on_disk
    est = tiny(max_epochs=1, validation_fraction=0.25).fit(stack)
    assert np.isfinite(est.history_[-1, "valid_loss"]) and np.isfinite(est.history_[-1, "valid_recon"])


def test_sklearn_behaviours_on_particle_stacks(fitted, on_disk, tmp_path):
    est, stack = fitted
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "net_")
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.transform(stack), est.transform(stack))
    # a pipeline from STAR paths to clusters
    _, path = on_disk
    pipe = Pipeline([("read", StarReader()), ("dsd", clone(est)), ("km", KMeans(2, n_init=2, random_state=0))])
    labels = pipe.fit([str(path)]).predict([str(path)])
    assert labels.shape == (40,)
    frame = clone(est).set_output(transform="pandas").fit(stack).transform(stack)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["opusdsd0", "opusdsd1"]
    search = GridSearchCV(clone(est).set_params(max_epochs=1), {"lamb": [0.5, 1.0]}, cv=2).fit(stack)
    assert search.best_params_["lamb"] in (0.5, 1.0)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_presets_are_valid_parameters():
    from sklearn_disentangle._validation import validate_params

    for name, preset in OpusDSD.PRESETS.items():
        assert set(preset) <= set(OpusDSD().get_params()), name
        validate_params(OpusDSD(**preset))
