"""Exceptions and warnings raised by the readers and writers of :mod:`sklearn_disentangle.io`.

Every reader error is a :class:`ReaderError`, itself a :class:`ValueError`, so callers that
already catch ``ValueError`` keep working; a missing file raises the built-in
:class:`FileNotFoundError`. Each message names the file it is about.
"""

__all__ = [
    "ReaderError",
    "MRCError",
    "StarError",
    "CryoSparcError",
    "HDF5Error",
    "ReaderWarning",
]


class ReaderError(ValueError):
    """A file could not be read, or its content is inconsistent.

    Examples
    --------
    >>> from sklearn_disentangle.io._errors import ReaderError
    >>> issubclass(ReaderError, ValueError)
    True
    """


class MRCError(ReaderError):
    """An MRC/MRCS file is damaged, truncated or of the wrong kind.

    Examples
    --------
    >>> from sklearn_disentangle.io._errors import MRCError, ReaderError
    >>> issubclass(MRCError, ReaderError)
    True
    """


class StarError(ReaderError):
    """A STAR file is malformed, lacks a particle block or a required column.

    Examples
    --------
    >>> from sklearn_disentangle.io._errors import StarError, ReaderError
    >>> issubclass(StarError, ReaderError)
    True
    """


class CryoSparcError(ReaderError):
    """A cryoSPARC ``.cs`` file is unreadable or lacks the fields asked for.

    Examples
    --------
    >>> from sklearn_disentangle.io._errors import CryoSparcError, ReaderError
    >>> issubclass(CryoSparcError, ReaderError)
    True
    """


class HDF5Error(ReaderError):
    """An HDF5 volume file is unreadable or does not follow the documented layout.

    Examples
    --------
    >>> from sklearn_disentangle.io._errors import HDF5Error, ReaderError
    >>> issubclass(HDF5Error, ReaderError)
    True
    """


class ReaderWarning(UserWarning):
    """A file was read, but something in it is unusual or disagrees with other metadata.

    Examples
    --------
    >>> from sklearn_disentangle.io._errors import ReaderWarning
    >>> issubclass(ReaderWarning, UserWarning)
    True
    """
