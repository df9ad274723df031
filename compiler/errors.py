"""llmc's one exception family.

Every error a user can cause (bad model file, unsupported op, wrong input, tampered artifact)
is raised as a subclass of :class:`LlmcError` with a message that names the problem, where it is
(node, op, file) and, where possible, what to do. The CLI prints these on one line.
"""
from __future__ import annotations


class LlmcError(Exception):
    """Base of every error llmc raises on purpose."""


class FrontendError(LlmcError):
    """The input model could not be read or is malformed."""


class UnsupportedOpError(FrontendError):
    """An operator (or an attribute value of one) that llmc does not implement."""


class ShapeError(LlmcError):
    """Shapes or dtypes that do not fit: at import, during inference or at run time."""


class VerificationError(LlmcError):
    """The IR breaks one of its invariants (a pass or frontend bug)."""


class BackendError(LlmcError):
    """Lowering or building for a target failed."""


class ArtifactError(LlmcError):
    """An artifact is missing, tampered with, of a wrong version, or built for another machine."""


class InputError(LlmcError):
    """Inputs handed to a compiled model do not match its signature."""
