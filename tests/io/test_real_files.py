"""Conformance on the real cryo-EM files of ../shared/data/cryodrgn (skipped where absent).

The same images must come out through .mrcs, .star (RELION 3.0, 3.1, 5), .txt and .cs paths;
poses and CTF must match the values cryoDRGN parsed from the same files (its .pkl files are
loaded here with pickle as known test fixtures; the library itself never unpickles).
"""

import pickle
import warnings

import mrcfile
import numpy as np
import pytest

from sklearn_disentangle.io import (
    ParticleStack, ReaderWarning, StarError, parse_ctf, parse_poses, read_mrc, read_star, write_star,
)
from sklearn_disentangle.io.cs import parse_cs_ctf, parse_cs_poses, read_cs
from sklearn_disentangle.io.star import star_pixel_size


def _pkl(folder, name):
    with open(folder / name, "rb") as fh:
        return pickle.load(fh)


def _raw(folder, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(folder / name, permissive=True) as m:
            return np.array(m.data)


@pytest.fixture(scope="module")
def toy(shared_data):
    return _raw(shared_data, "toy_projections.mrcs")


STRICT_FAILS = ["relion31.mrcs", "toy_projections.mrcs", "toy_projections.mrc", "toy_projections_0-999.mrcs",
                "hand.5.mrcs", "ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs"]


@pytest.mark.parametrize("name", STRICT_FAILS)
def test_files_strict_mrcfile_refuses_are_read_with_one_warning(shared_data, name):
    with pytest.raises(ValueError):
        mrcfile.open(shared_data / name).close()
    with pytest.warns(ReaderWarning, match="Map ID") as record:
        data, info = read_mrc(shared_data / name, kind="stack")
    assert len([w for w in record if w.category is ReaderWarning]) == 1
    np.testing.assert_array_equal(data, _raw(shared_data, name))


@pytest.mark.parametrize("name, kind, shape, apix", [
    ("empiar_10076_7.mrc", "stack", (7, 320, 320), None),      # ispg 1 but a stack; pixel size 0 = unknown
    ("spike-vol.mrc", "volume", (128, 16, 16), 8.0),           # ispg 0 but a volume
    ("50S-vol.mrc", "volume", (128, 32, 32), 4.0),
    ("hand-vol.mrc", "volume", (64, 64, 64), 1.0),
    ("toymodel_small_nocenter.mrc", "volume", (30, 30, 30), 1.0),
])
def test_stack_or_volume_never_from_ispg(shared_data, name, kind, shape, apix):
    data, info = read_mrc(shared_data / name, kind="stack" if kind == "stack" else "auto")
    assert info.kind == kind and data.shape == shape and info.pixel_size == apix
    assert read_mrc(shared_data / name)[1].kind == "volume"  # '.mrc' alone means volume


def test_identical_copies_read_identically(shared_data, toy):
    for name in ("toy_projections.mrc", "toy_projections_0-999.mrcs"):
        with pytest.warns(ReaderWarning, match="Map ID"):
            stack = ParticleStack.from_mrcs(shared_data / name)
        np.testing.assert_array_equal(stack.get_images(), toy)


@pytest.mark.parametrize("name", ["toy_projections.star", "toy.star"])
def test_same_images_through_mrcs_star_txt(shared_data, toy, name):
    with pytest.warns(ReaderWarning):
        via_star = ParticleStack.from_star(shared_data / name)
        via_txt = ParticleStack.from_mrcs(shared_data / "toy_projections.txt")
        via_mrcs = ParticleStack.from_mrcs(shared_data / "toy_projections.mrcs")
    for stack in (via_star, via_txt, via_mrcs):
        np.testing.assert_array_equal(stack.get_images(), toy)
    idx = np.array([999, 0, 500, 500])
    np.testing.assert_array_equal(via_star[idx].get_images(), toy[idx])


def test_txt_listing_a_stack_twice(shared_data, toy):
    with pytest.warns(ReaderWarning):
        stack = ParticleStack.from_mrcs(shared_data / "toy_projections_2.txt")
    assert len(stack) == 2000
    np.testing.assert_array_equal(stack[[1000, 1999]].get_images(), toy[[0, 999]])


def test_relion31_subset_with_optics(shared_data, toy):
    with pytest.warns(ReaderWarning):
        stack = ParticleStack.from_star(shared_data / "toy_projections_13.star")
    order = [93, 32, 4, 5, 523, 556, 230, 875, 685, 321, 598, 155, 321]
    np.testing.assert_array_equal(stack.get_images(), toy[np.array(order) - 1])
    assert stack.pixel_size == pytest.approx(1.035)  # optics, not the header's 1.0


@pytest.mark.parametrize("name", ["toy_projections_dir.star", "relion5.star"])
def test_datadir_resolution(shared_data, toy, name):
    with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
        ParticleStack.from_star(shared_data / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReaderWarning)
        stack = ParticleStack.from_star(shared_data / name, datadir=shared_data / "toy_datadir")
    a = _raw(shared_data, "toy_datadir/toy_images_a.mrcs")
    b = _raw(shared_data, "toy_datadir/toy_images_b.mrcs")
    table = read_star(shared_data / name)
    expected = [(a if p.startswith("1@toy_images_a") or "@toy_images_a" in p else b)[int(p.split("@")[0]) - 1]
                for p in table["rlnImageName"]]
    np.testing.assert_array_equal(stack.get_images(), np.stack(expected))


def test_relion5_metadata_disagreeing_with_stacks_warns(shared_data):
    with pytest.warns(ReaderWarning, match="rlnImageSize says 448.*30x30"):
        stack = ParticleStack.from_star(shared_data / "relion5.star", datadir=shared_data / "toy_datadir")
    assert stack.box_size == 30 and stack.pixel_size == pytest.approx(0.89)
    table = read_star(shared_data / "relion5.star")
    assert table.attrs["relion_layout"] == "3.1"
    assert {"rlnOddZernike", "rlnMagMat00", "rlnBeamTiltX"} <= set(table.columns)


def test_relion30_vs_31_layouts_same_poses(shared_data):
    t31 = read_star(shared_data / "relion31.star")
    t31v2 = read_star(shared_data / "relion31.v2.star")  # particles block first
    for a, b in zip(parse_poses(t31), parse_poses(t31v2)):
        np.testing.assert_array_equal(a, b)
    with pytest.warns(ReaderWarning):
        stack = ParticleStack.from_star(shared_data / "relion31.star")
        raw = read_mrc(shared_data / "relion31.mrcs")[0]
    np.testing.assert_array_equal(stack.get_images(), raw)
    assert stack.pixel_size == pytest.approx(2.806)  # star optics, not the header's 1.0
    np.testing.assert_allclose(stack.shifts[0], [0.019324, -0.64686])  # Angstrom as written


def test_relion31_round_trip_through_write_star(shared_data, tmp_path):
    table = read_star(shared_data / "relion31.star")
    out = tmp_path / "relion31.star"
    write_star(out, table)
    (tmp_path / "relion31.mrcs").symlink_to(shared_data / "relion31.mrcs")
    back = read_star(out)
    for a, b in zip(parse_poses(table), parse_poses(back)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(parse_ctf(back).to_numpy(), parse_ctf(table).to_numpy(), rtol=1e-7, atol=1e-6)
    with pytest.warns(ReaderWarning, match="relion31.mrcs"):
        via_copy = ParticleStack.from_star(out).get_images()
        via_original = ParticleStack.from_star(shared_data / "relion31.star").get_images()
    np.testing.assert_array_equal(via_copy, via_original)


def test_six_optics_groups(shared_data):
    table = read_star(shared_data / "relion31.6opticsgroups.star")
    assert len(table) == 139 and table.attrs["relion_layout"] == "3.1"
    assert len(table.attrs["optics"]["rlnOpticsGroup"]) == 6
    ctf = parse_ctf(table)
    groups = table["rlnOpticsGroup"].to_numpy()
    expected_apix = {1: 1.25, 2: 1.24, 3: 1.25, 4: 1.25, 5: 1.24, 6: 1.25}  # group 6: micrograph 1.035
    expected_cs = {1: 2.7, 2: 2.7, 3: 2.7, 4: 2.6, 5: 2.7, 6: 2.7}
    np.testing.assert_allclose(ctf["pixel_size"], [expected_apix[g] for g in groups])
    np.testing.assert_allclose(ctf["spherical_aberration"], [expected_cs[g] for g in groups])
    assert set(groups) == set(range(1, 7))
    rot, shifts = parse_poses(table)
    np.testing.assert_allclose(shifts[:, 0], table["rlnOriginXAngst"])  # already Angstrom
    with pytest.raises(FileNotFoundError, match="6opticsgroups.*Polish"):
        ParticleStack.from_star(shared_data / "relion31.6opticsgroups.star")


def test_empiar_pixel_size_from_detector_and_magnification(shared_data):
    table = read_star(shared_data / "empiar_10076_7.star")
    np.testing.assert_allclose(star_pixel_size(table), 5.0e4 / 38168, rtol=1e-12)
    stack = ParticleStack.from_star(shared_data / "empiar_10076_7.star")
    assert stack.pixel_size == pytest.approx(1.31, abs=1e-3)  # header says 0
    assert read_mrc(shared_data / "empiar_10076_7.mrc", kind="stack")[1].pixel_size is None
    via_cs = ParticleStack.from_cs(shared_data / "empiar_10076_7.cs")
    np.testing.assert_array_equal(via_cs.get_images(), stack.get_images())
    assert via_cs.pixel_size == pytest.approx(1.31, abs=1e-3)
    np.testing.assert_allclose(via_cs.ctf["defocus_u"], stack.ctf["defocus_u"], rtol=1e-6)
    np.testing.assert_allclose(via_cs.ctf["defocus_angle"], stack.ctf["defocus_angle"], atol=1e-4)


def test_rotations_and_shifts_match_cryodrgn_star(shared_data):
    """pose.star.pkl holds the RELION matrices and shifts/300 px box of the PfCRT star file."""
    table = read_star(shared_data / "FinalRefinement-OriginalParticles-PfCRT.star")
    rot, shifts = parse_poses(table)
    ref_rot, ref_trans = _pkl(shared_data, "pose.star.pkl")
    np.testing.assert_allclose(rot, ref_rot, atol=1e-12)
    apix = star_pixel_size(table)  # 1.035 * 1e4 / 10000
    np.testing.assert_allclose(apix, 1.035)
    np.testing.assert_allclose(shifts / apix[:, None] / 300, ref_trans, atol=1e-12)


def test_ctf_matches_cryodrgn_star(shared_data):
    table = read_star(shared_data / "FinalRefinement-OriginalParticles-PfCRT.star")
    with pytest.raises(StarError, match="rlnAmplitudeContrast"):
        parse_ctf(table)
    ctf = parse_ctf(table, defaults={"amplitude_contrast": 0.1})
    ref = _pkl(shared_data, "ctf1.pkl")  # D, Apix, dfU, dfV, dfang, kV, Cs, w, phase shift
    cols = ["pixel_size", "defocus_u", "defocus_v", "defocus_angle", "voltage", "spherical_aberration",
            "amplitude_contrast", "phase_shift"]
    np.testing.assert_allclose(ctf[cols].to_numpy(), ref[:, 1:], rtol=1e-6)


def test_cryosparc_poses_and_ctf_match_cryodrgn(shared_data):
    records = read_cs(shared_data / "cryosparc_P12_J24_001_particles.cs")
    rot, shifts = parse_cs_poses(records)
    ref_rot, ref_trans = _pkl(shared_data, "pose.cs.pkl")
    np.testing.assert_allclose(rot, ref_rot, atol=1e-5)
    np.testing.assert_allclose(shifts / 2.95 / 180, ref_trans, atol=1e-6)
    ctf = parse_cs_ctf(records)
    ref = _pkl(shared_data, "ctf2.pkl")
    cols = ["pixel_size", "defocus_u", "defocus_v", "defocus_angle", "voltage", "spherical_aberration",
            "amplitude_contrast", "phase_shift"]
    np.testing.assert_allclose(ctf[cols].to_numpy(), ref[:, 1:], rtol=1e-5, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="cryosparc_P12_J24_001_particles.cs"):
        ParticleStack.from_cs(shared_data / "cryosparc_P12_J24_001_particles.cs")


def test_cryosparc_2d_export_has_no_3d_poses(shared_data):
    records = read_cs(shared_data / "cryosparc_J2_particles_exported.cs")
    with pytest.raises(ValueError, match="alignments3D"):
        parse_cs_poses(records, source="cryosparc_J2_particles_exported.cs")
    assert len(parse_cs_ctf(records)) == 22


def test_tilt_series_star_with_fewer_rows_than_images(shared_data):
    with pytest.warns(ReaderWarning):
        stack = ParticleStack.from_star(shared_data / "sta_testing_bin8.star")
        raw = read_mrc(shared_data / "ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs")[0]
    assert len(stack) == 219 and raw.shape[0] == 220
    np.testing.assert_array_equal(stack.get_images(), raw[:219])
    assert stack.pixel_size == pytest.approx(1.96)
    assert read_star(shared_data / "sta_testing.star").shape == (219, 20)


def test_hand_stacks_and_odd_box(shared_data):
    hand = ParticleStack.from_mrcs(shared_data / "hand.mrcs")
    with pytest.warns(ReaderWarning):
        hand5 = ParticleStack.from_mrcs(shared_data / "hand.5.mrcs")
    np.testing.assert_array_equal(hand5.get_images(), hand[:5].get_images())
    odd = np.load(shared_data / "hand_11_particles.npy")
    assert odd.shape == (11, 65, 65)
    stack = ParticleStack(odd, pixel_size=1.0)
    assert stack.box_size == 65 and stack[3:5].get_images().shape == (2, 65, 65)


@pytest.mark.parametrize("name", ["pose.star.pkl", "ctf1.pkl", "toy_projections.mrcs", "toy_projections.txt"])
def test_wrong_files_given_as_star(shared_data, name):
    with pytest.raises(StarError, match=name.replace(".", r"\.")):
        read_star(shared_data / name)
