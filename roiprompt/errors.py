"""One exception hierarchy for the whole package.

Every error subclasses :class:`ValueError`, so ``except ValueError`` still catches them. Messages name the file
or argument at fault, what was expected, what came, and how to fix it.
"""

from __future__ import annotations


class RoiPromptError(ValueError):
    """Base class of every error roiprompt raises on purpose."""


class InputError(RoiPromptError):
    """A bad image, mask, prompt or argument: unreadable, wrong size, wrong dtype, empty, NaN..."""


class DataError(RoiPromptError):
    """A dataset that cannot be found or does not follow its official layout."""


class CheckpointError(RoiPromptError):
    """Weights that cannot be found, fail their SHA-256 check, or do not fit the architecture."""


class PromptWarning(UserWarning):
    """A prompt the backbone cannot use well (points alone on a model trained with boxes), or an empty result."""


class NotSavableError(RoiPromptError, NotImplementedError):
    """A method (or a part of it) that :meth:`~roiprompt.methods.base.Method.save` cannot write yet; the message
    names the method. Also a :class:`NotImplementedError`."""


def shown(path: object) -> str:
    """A file name fit for a message: bytes that are not UTF-8 (Linux allows them in names) as ``\\xNN``.

    ``str(path)`` of such a name holds lone surrogates, which cannot be printed or written to a UTF-8 file.
    """
    import os

    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")  # type: ignore[arg-type]
    except TypeError:
        return str(path)
