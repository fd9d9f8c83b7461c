"""ParticleStack on generated data: indexing, sklearn splitters, lazy reads, writing, pickling."""

import pickle

import mrcfile
import numpy as np
import pytest
from sklearn.model_selection import KFold, train_test_split

from sklearn_disentangle.cryoem.rotations import random_rotations
from sklearn_disentangle.io import ParticleStack, StarError, read_star, write_mrc
from sklearn_disentangle.io.star import parse_ctf


@pytest.fixture
def images():
    return np.random.default_rng(0).standard_normal((12, 16, 16)).astype(np.float32)


@pytest.fixture
def two_stacks(tmp_path, images):
    write_mrc(tmp_path / "a.mrcs", images[:5], pixel_size=2.0)
    write_mrc(tmp_path / "b.mrcs", images[5:], pixel_size=2.0)
    return tmp_path


def test_from_mrcs_several_stacks_and_txt(two_stacks, images):
    stack = ParticleStack.from_mrcs([two_stacks / "a.mrcs", two_stacks / "b.mrcs"])
    assert len(stack) == 12 and stack.shape == (12, 16, 16) and stack.pixel_size == 2.0
    np.testing.assert_array_equal(stack.get_images(), images)
    (two_stacks / "list.txt").write_text("a.mrcs\n\nb.mrcs\n")
    np.testing.assert_array_equal(ParticleStack.from_mrcs(two_stacks / "list.txt").get_images(), images)


@pytest.mark.parametrize(
    "key",
    [slice(2, 9), slice(None, None, -3), [11, 0, 5, 5, 3], np.arange(12) % 3 == 0, 7, -1, np.array([], int)],
)
def test_indexing_returns_particle_stack(two_stacks, images, key):
    stack = ParticleStack.from_mrcs([two_stacks / "a.mrcs", two_stacks / "b.mrcs"])
    sub = stack[key]
    assert isinstance(sub, ParticleStack)
    expected = images[key] if not isinstance(key, int) else images[[key]]
    np.testing.assert_array_equal(sub.get_images(), expected)
    np.testing.assert_array_equal(np.asarray(sub), expected)


def test_index_errors(images):
    stack = ParticleStack(images)
    with pytest.raises(IndexError):
        stack[12]
    with pytest.raises(IndexError):
        stack[np.ones(3, bool)]
    with pytest.raises(IndexError):
        stack[0, 1]


def test_sklearn_splitters_work_lazily(two_stacks, images):
    labels = np.arange(12) % 3
    stack = ParticleStack.from_mrcs([two_stacks / "a.mrcs", two_stacks / "b.mrcs"])
    stack.labels = labels
    train, test, y_train, y_test = train_test_split(stack, labels, test_size=4, random_state=0, stratify=labels)
    assert isinstance(train, ParticleStack) and len(test) == 4
    np.testing.assert_array_equal(test.labels, y_test)
    seen = []
    for tr, te in KFold(3, shuffle=True, random_state=0).split(stack):
        fold = stack[te]
        seen.extend(te)
        np.testing.assert_array_equal(fold.get_images(), images[te])
    assert sorted(seen) == list(range(12))


def test_metadata_follows_indexing(images):
    rot = random_rotations(12, random_state=0).double().numpy()
    shifts = np.arange(24, dtype=float).reshape(12, 2)
    stack = ParticleStack(images, pixel_size=1.0, rotations=rot, shifts=shifts, labels=np.arange(12))
    sub = stack[[3, 1]]
    np.testing.assert_array_equal(sub.rotations, rot[[3, 1]])
    np.testing.assert_array_equal(sub.shifts, shifts[[3, 1]])
    np.testing.assert_array_equal(sub.labels, [3, 1])
    with pytest.raises(ValueError, match="rotations"):
        ParticleStack(images, rotations=np.zeros((3, 3, 3)))


def test_batches_and_pickling(two_stacks, images):
    stack = ParticleStack.from_mrcs([two_stacks / "a.mrcs", two_stacks / "b.mrcs"])
    batches = list(stack.iter_batches(5))
    assert [len(b) for b in batches] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate(batches), images)
    clone = pickle.loads(pickle.dumps(stack[2:7]))
    np.testing.assert_array_equal(clone.get_images(), images[2:7])


def test_big_endian_and_int16_stacks(tmp_path):
    data = np.arange(3 * 4 * 4).reshape(3, 4, 4)
    with mrcfile.new(tmp_path / "be.mrcs") as m:
        m.set_data(data.astype(">f4"))
    write_mrc(tmp_path / "i16.mrcs", data.astype(np.int16))
    for name in ("be.mrcs", "i16.mrcs"):
        stack = ParticleStack.from_mrcs(tmp_path / name)
        out = stack[[2, 0]].get_images()
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, data[[2, 0]])


def test_compressed_stack(tmp_path, images):
    write_mrc(tmp_path / "c.mrcs.gz", images)
    np.testing.assert_array_equal(ParticleStack.from_mrcs(tmp_path / "c.mrcs.gz")[4:6].get_images(), images[4:6])


def test_to_star_round_trip_in_memory(tmp_path, images):
    rot = random_rotations(12, random_state=1).double().numpy()
    shifts = np.random.default_rng(1).uniform(-3, 3, (12, 2))
    table = parse_ctf(read_star_like(12))
    stack = ParticleStack(images, pixel_size=2.5, rotations=rot, shifts=shifts, ctf=table, labels=np.arange(12) % 4)
    stack.to_star(tmp_path / "sim.star")
    back = ParticleStack.from_star(tmp_path / "sim.star", label_column="rlnClassNumber")
    np.testing.assert_array_equal(back.get_images(), images)
    np.testing.assert_allclose(back.rotations, rot, atol=1e-5)
    np.testing.assert_allclose(back.shifts, shifts, atol=1e-6)
    np.testing.assert_array_equal(back.labels, np.arange(12) % 4)
    assert back.pixel_size == 2.5
    np.testing.assert_allclose(back.ctf.to_numpy(), stack.ctf.assign(pixel_size=2.5).to_numpy(), atol=1e-6)
    # a subset written again refers to the same stack, no new images written
    back[[5, 2]].to_star(tmp_path / "subset.star")
    assert read_star(tmp_path / "subset.star")["rlnImageName"].tolist() == ["000006@sim.mrcs", "000003@sim.mrcs"]
    np.testing.assert_array_equal(ParticleStack.from_star(tmp_path / "subset.star").get_images(), images[[5, 2]])


def read_star_like(n):
    import pandas as pd

    rng = np.random.default_rng(2)
    return pd.DataFrame({"rlnDefocusU": rng.uniform(1e4, 2e4, n), "rlnDefocusV": rng.uniform(1e4, 2e4, n),
                         "rlnDefocusAngle": rng.uniform(-90, 90, n), "rlnVoltage": 300.0,
                         "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1})


def test_star_errors_name_files(tmp_path, images):
    write_mrc(tmp_path / "s.mrcs", images[:3])
    (tmp_path / "past.star").write_text("data_\nloop_\n_rlnImageName\n1@s.mrcs\n4@s.mrcs\n")
    with pytest.raises(StarError, match=r"past\.star.*index 4 is past the end.*s\.mrcs \(3 images\)"):
        ParticleStack.from_star(tmp_path / "past.star")
    (tmp_path / "gone.star").write_text("data_\nloop_\n_rlnImageName\n1@missing.mrcs\n")
    with pytest.raises(FileNotFoundError, match=r"gone\.star.*missing\.mrcs"):
        ParticleStack.from_star(tmp_path / "gone.star")


def test_mixed_box_sizes_rejected(tmp_path, images):
    write_mrc(tmp_path / "a.mrcs", images[:2])
    write_mrc(tmp_path / "b.mrcs", np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="different image sizes"):
        ParticleStack.from_mrcs([tmp_path / "a.mrcs", tmp_path / "b.mrcs"])


def test_concatenate(images):
    a = ParticleStack(images[:4], pixel_size=1.0)
    b = ParticleStack(images[4:], pixel_size=1.0)
    joined = ParticleStack.concatenate([a, b])
    np.testing.assert_array_equal(joined[[0, 11]].get_images(), images[[0, 11]])


def test_from_file_dispatches_on_extension(two_stacks, images):
    np.testing.assert_array_equal(ParticleStack.from_file(two_stacks / "a.mrcs").get_images(), images[:5])
    ParticleStack.from_file(two_stacks / "a.mrcs").to_star(two_stacks / "a.star")
    np.testing.assert_array_equal(ParticleStack.from_file(two_stacks / "a.star").get_images(), images[:5])
    (two_stacks / "x.pkl").write_bytes(b"\x80\x04.")
    with pytest.raises(ValueError, match=r"x\.pkl.*unknown particle file type"):
        ParticleStack.from_file(two_stacks / "x.pkl")
