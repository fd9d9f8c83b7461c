"""Readers and writers for cryo-EM and volume data.

MRC volumes and particle stacks (:func:`read_mrc`, :func:`write_mrc`), RELION STAR files
(:func:`read_star`, :func:`parse_poses`, :func:`parse_ctf`, :func:`write_star`), cryoSPARC
``.cs`` files, HDF5 volume files, the lazy :class:`ParticleStack`, and scikit-learn
transformers that start a pipeline from file paths. Every reader error is a
:class:`ReaderError` (a ``ValueError``) or ``FileNotFoundError`` and names the file.
"""
from ._errors import CryoSparcError, HDF5Error, MRCError, ReaderError, ReaderWarning, StarError
from .mrc import MRCInfo, read_mrc, write_mrc
from .particles import ParticleStack
from .star import parse_ctf, parse_poses, read_star, write_star
from .transformers import HDF5VolumeReader, MRCReader, StarReader

__all__ = [
    "read_mrc", "write_mrc", "MRCInfo",
    "read_star", "parse_poses", "parse_ctf", "write_star", "ParticleStack",
    "MRCReader", "StarReader", "HDF5VolumeReader",
    "ReaderError", "MRCError", "StarError", "CryoSparcError", "HDF5Error", "ReaderWarning",
]
