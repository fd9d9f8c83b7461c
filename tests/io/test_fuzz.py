"""Property-based robustness: random bytes and truncated real files only raise documented errors.

Documented errors: ``ReaderError`` (a ``ValueError``: ``MRCError``, ``StarError``,
``CryoSparcError``) or ``FileNotFoundError``; never another exception, a crash or a hang.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sklearn_disentangle.io import ParticleStack, ReaderError, read_mrc, read_star, write_mrc, write_star
from sklearn_disentangle.io.cs import read_cs

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _call(reader, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = reader(path)
        except (ReaderError, FileNotFoundError) as exc:
            assert str(path) in str(exc) or path.name in str(exc)
            return None
    return out


READERS = {
    "mrc": lambda p: read_mrc(p, mmap=False),
    "mrcs": lambda p: ParticleStack.from_mrcs(p).get_images(),
    "star": read_star,
    "star_stack": lambda p: ParticleStack.from_star(p).get_images(),
    "cs": read_cs,
}


@SETTINGS
@given(data=st.binary(min_size=0, max_size=3000), kind=st.sampled_from(sorted(READERS)))
def test_random_bytes(tmp_path, data, kind):
    path = tmp_path / f"f.{ 'mrcs' if kind == 'mrcs' else kind.split('_')[0]}"
    path.write_bytes(data)
    _call(READERS[kind], path)


@SETTINGS
@given(header=st.binary(min_size=1024, max_size=1024), extra=st.binary(max_size=600))
def test_random_mrc_headers(tmp_path, header, extra):
    """Random 1024-byte headers (with a plausible data tail) stress the header validation."""
    path = tmp_path / "h.mrcs"
    path.write_bytes(header + extra)
    _call(READERS["mrcs"], path)
    _call(READERS["mrc"], path)


@pytest.fixture(scope="module")
def generated_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen")
    images = np.random.default_rng(0).standard_normal((6, 16, 16)).astype(np.float32)
    write_mrc(folder / "s.mrcs", images)
    import pandas as pd

    write_star(folder / "s.star", pd.DataFrame({
        "rlnImageName": [f"{i + 1}@s.mrcs" for i in range(6)], "rlnAngleRot": np.arange(6.0),
        "rlnAngleTilt": np.arange(6.0), "rlnAnglePsi": np.arange(6.0), "rlnOriginXAngst": np.zeros(6),
        "rlnOriginYAngst": np.zeros(6), "rlnImagePixelSize": 1.0, "rlnDefocusU": 1e4, "rlnVoltage": 300.0,
        "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
    }))
    return folder


@SETTINGS
@given(fraction=st.floats(0.0, 0.999), name=st.sampled_from(["s.mrcs", "s.star"]))
def test_truncated_generated_files(generated_files, tmp_path, fraction, name):
    data = (generated_files / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * fraction)])
    if name == "s.star":
        (tmp_path / "s.mrcs").write_bytes((generated_files / "s.mrcs").read_bytes())
        _call(READERS["star_stack"], cut)
    else:
        _call(READERS["mrcs"], cut)


REAL = ["toy_projections.mrcs", "hand-vol.mrc", "relion31.star", "toy_projections_13.star",
        "empiar_10076_7.cs", "relion5.star", "FinalRefinement-OriginalParticles-PfCRT.star"]


@SETTINGS
@given(fraction=st.floats(0.0, 0.999), name=st.sampled_from(REAL))
def test_truncated_real_files(shared_data, tmp_path, fraction, name):
    data = (shared_data / name).read_bytes()[:200_000]  # the head is where the structure is
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * fraction)])
    ext = name.rsplit(".", 1)[1]
    kind = {"mrcs": "mrcs", "mrc": "mrc", "star": "star", "cs": "cs"}[ext]
    _call(READERS[kind], cut)
