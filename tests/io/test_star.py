"""STAR reading/writing on hand-written files: layouts, optics merging, offsets rule, errors."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_disentangle.io import ReaderWarning, StarError, parse_ctf, parse_poses, read_star, write_star
from sklearn_disentangle.io.star import parse_image_names, resolve_stack_path, star_pixel_size

RELION30 = """
data_images

loop_
_rlnImageName #1
_rlnAngleRot #2
_rlnAngleTilt #3
_rlnAnglePsi #4
_rlnOriginX #5
_rlnOriginY #6
_rlnDefocusU #7
_rlnDefocusV #8
_rlnDefocusAngle #9
_rlnVoltage #10
_rlnSphericalAberration #11
_rlnAmplitudeContrast #12
_rlnDetectorPixelSize #13
_rlnMagnification #14
000001@stack.mrcs 10.0 20.0 30.0 1.0 -2.0 15000 14000 45 300 2.7 0.1 5.0 50000
2@stack.mrcs -10.0 90.0 0.0 0.5 0.0 16000 15000 0 300 2.7 0.1 5.0 50000
"""

OPTICS = """
data_optics

loop_
_rlnOpticsGroup
_rlnOpticsGroupName
_rlnVoltage
_rlnSphericalAberration
_rlnAmplitudeContrast
_rlnImagePixelSize
_rlnImageSize
_rlnImageDimensionality
1 og1 300 2.7 0.1 1.5 64 2
2 og2 200 2.0 0.07 2.0 64 2
"""

PARTICLES = """
data_particles

loop_
_rlnImageName
_rlnOpticsGroup
_rlnAngleRot
_rlnAngleTilt
_rlnAnglePsi
_rlnOriginXAngst
_rlnOriginYAngst
_rlnDefocusU
_rlnDefocusV
_rlnDefocusAngle
1@a.mrcs 1 0 0 0 1.5 3.0 10000 10000 0
2@a.mrcs 2 0 90 0 2.0 -2.0 20000 19000 10
3@b.mrcs 1 45 45 45 0.0 0.0 30000 30000 20
"""


def _write(tmp_path, text, name="p.star"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_relion30_layout(tmp_path):
    table = read_star(_write(tmp_path, RELION30))
    assert table.attrs["relion_layout"] == "3.0" and len(table) == 2
    np.testing.assert_allclose(star_pixel_size(table), 1.0)  # 5 um * 1e4 / 50000
    rot, shifts = parse_poses(table)
    np.testing.assert_allclose(shifts, [[1.0, -2.0], [0.5, 0.0]])  # pixels x 1 A
    assert rot.shape == (2, 3, 3)
    ctf = parse_ctf(table)
    assert ctf.loc[0, "defocus_u"] == 15000 and ctf.loc[1, "defocus_angle"] == 0
    assert ctf.loc[0, "phase_shift"] == 0 and ctf.loc[0, "bfactor"] == 0 and ctf.loc[0, "scale"] == 1


@pytest.mark.parametrize("order", ["optics_first", "particles_first"])
def test_relion31_optics_merged_per_particle(tmp_path, order):
    text = OPTICS + PARTICLES if order == "optics_first" else PARTICLES + OPTICS
    table = read_star(_write(tmp_path, text))
    assert table.attrs["relion_layout"] == "3.1"
    assert table["rlnVoltage"].tolist() == [300, 200, 300]
    assert table["rlnImagePixelSize"].tolist() == [1.5, 2.0, 1.5]
    ctf = parse_ctf(table)
    assert ctf["spherical_aberration"].tolist() == [2.7, 2.0, 2.7]
    assert ctf["pixel_size"].tolist() == [1.5, 2.0, 1.5]
    rot, shifts = parse_poses(table)
    np.testing.assert_allclose(shifts, [[1.5, 3.0], [2.0, -2.0], [0.0, 0.0]])
    assert pd.DataFrame(table.attrs["optics"]).shape == (2, 8)


def test_both_origin_columns_rule(tmp_path):
    text = OPTICS + PARTICLES.replace("_rlnDefocusAngle\n", "_rlnDefocusAngle\n_rlnOriginX\n_rlnOriginY\n")
    lines = text.splitlines()
    rows = [i for i, ln in enumerate(lines) if "@" in ln]
    agree = [(1.0, 2.0), (1.0, -1.0), (0.0, 0.0)]  # = Angst / pixel size
    for i, (x, y) in zip(rows, agree):
        lines[i] += f" {x} {y}"
    table = read_star(_write(tmp_path, "\n".join(lines)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, shifts = parse_poses(table)  # consistent: no warning, Angstrom columns used
    np.testing.assert_allclose(shifts, [[1.5, 3.0], [2.0, -2.0], [0.0, 0.0]])
    table.loc[0, "rlnOriginX"] = 5.0
    with pytest.warns(ReaderWarning, match="disagree"):
        _, shifts = parse_poses(table)
    assert shifts[0, 0] == 1.5  # the Angstrom column wins


def test_particle_value_conflicting_with_optics_warns(tmp_path):
    text = OPTICS + PARTICLES.replace("_rlnDefocusAngle\n", "_rlnDefocusAngle\n_rlnVoltage\n")
    text = "\n".join(ln + " 999" if "@" in ln else ln for ln in text.splitlines())
    with pytest.warns(ReaderWarning, match="rlnVoltage"):
        table = read_star(_write(tmp_path, text))
    assert table["rlnVoltage"].tolist() == [300, 200, 300]


def test_pixels_without_pixel_size_is_an_error(tmp_path):
    text = RELION30.replace("_rlnDetectorPixelSize #13\n_rlnMagnification #14\n", "")
    text = "\n".join(ln.rsplit(" ", 2)[0] if "@" in ln else ln for ln in text.splitlines())
    table = read_star(_write(tmp_path, text))
    with pytest.raises(StarError, match="pixel size"):
        parse_poses(table)
    assert parse_poses(table, pixel_size=2.0)[1][0].tolist() == [2.0, -4.0]


def test_image_names():
    idx, paths = parse_image_names(pd.DataFrame({"rlnImageName": ["000010@x/y.mrcs", "3@z.mrc"]}))
    assert idx.tolist() == [9, 2] and paths.tolist() == ["x/y.mrcs", "z.mrc"]
    for bad in ["stack.mrcs", "0@s.mrcs", "a@s.mrcs", "1@"]:
        with pytest.raises(StarError):
            parse_image_names(pd.DataFrame({"rlnImageName": [bad]}))


def test_resolve_stack_path(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "s.mrcs").write_bytes(b"")
    assert resolve_stack_path("Extract/job1/s.mrcs", tmp_path, tmp_path / "data")[0] == str(tmp_path / "data" / "s.mrcs")
    assert resolve_stack_path("s.mrcs", tmp_path / "data")[0] == str(tmp_path / "data" / "s.mrcs")


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "no 'data_' block|no data blocks"),
        ("data_model_general\n\n_rlnReferenceDimensionality 3\n", "no particle block"),
        ("data_general\n\n_rlnFinalResolution 3.1\n\ndata_fsc\n\nloop_\n_rlnResolution\n_rlnFourierShellCorrelation\n"
         "0.1 1.0\n", "post-processing"),
        (OPTICS, "no particle block"),
        ("data_particles\n\nloop_\n_rlnImageName\n_rlnDefocusU\n", "empty"),
        ("data_particles\n\nloop_\n_rlnDefocusU\n_rlnDefocusV\n1 2\n", "no rlnImageName"),
        ("data_particles\n\nloop_\n_rlnImageName\n_rlnDefocusU\n_rlnDefocusV\n1@a.mrcs 1 2\n2@a.mrcs 1\n", "row 2"),
        ("data_particles\n\nloop_\n_rlnImageName\n_rlnDefocusU\n1@a.mrcs 1\n2@a.mrcs 1 7 8\n", "malformed"),
        ("data_optics\n\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n1 300\n\ndata_particles\n\nloop_\n_rlnImageName\n"
         "_rlnOpticsGroup\n1@a.mrcs 2\n", "optics groups \\[2\\]"),
    ],
)
def test_bad_star_files_name_the_file(tmp_path, text, match):
    path = _write(tmp_path, text, "bad.star")
    with pytest.raises(StarError, match=match) as err:
        read_star(path)
    assert "bad.star" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_pickle_is_refused_not_loaded(tmp_path):
    path = tmp_path / "poses.pkl"
    path.write_bytes(pickle.dumps((np.eye(3), np.zeros(2))))
    with pytest.raises(StarError, match="pickle") as err:
        read_star(path)
    assert "poses.pkl" in str(err.value)


def test_missing_star_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.star"):
        read_star(tmp_path / "nothere.star")


def test_write_star_round_trip_relion31(tmp_path):
    table = read_star(_write(tmp_path, OPTICS + PARTICLES))
    out = tmp_path / "out.star"
    write_star(out, table)
    back = read_star(out)
    assert back.attrs["relion_layout"] == "3.1"
    pd.testing.assert_frame_equal(back[table.columns], table, check_dtype=False, check_like=True)
    for a, b in zip(parse_poses(table), parse_poses(back)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    pd.testing.assert_frame_equal(parse_ctf(table), parse_ctf(back), check_dtype=False)
    # per-cluster subset keeps its optics group values
    write_star(tmp_path / "sub.star", table.iloc[[1]])
    sub = read_star(tmp_path / "sub.star")
    assert sub["rlnVoltage"].tolist() == [200] and sub["rlnOpticsGroup"].tolist() == [2]


def test_write_star_converts_relion30_units(tmp_path):
    table = read_star(_write(tmp_path, RELION30))
    write_star(tmp_path / "out.star", table)
    back = read_star(tmp_path / "out.star")
    assert "rlnOriginXAngst" in back and "rlnOriginX" not in back
    for a, b in zip(parse_poses(table), parse_poses(back)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(star_pixel_size(back), star_pixel_size(table))


def test_write_star_rejects_inconsistent_optics(tmp_path):
    table = pd.DataFrame({"rlnImageName": ["1@a.mrcs", "2@a.mrcs"], "rlnVoltage": [300.0, 200.0]})
    with pytest.raises(ValueError, match="rlnVoltage"):
        write_star(tmp_path / "x.star", table)
    assert not list(tmp_path.iterdir())
