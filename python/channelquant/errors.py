# SPDX-License-Identifier: MIT
"""errors.py - the library's status codes as Python exceptions.

Every failing library call raises CQError (or a subclass chosen by the status)
carrying the library's own message (cq_err.msg), the stable status name
(cq_status_name) and, where the library names them, the token and channel.
Bad arguments caught before the library is called (wrong shapes, dtypes) raise
ValueError / TypeError as Python code does.
"""
from ._lib import CqErr, lib

_UNKNOWN = lib.cq_status_name(0x7FFFFFFF)
# code -> stable name ("CQ_OK", "CQ_ERR_NULL", ...) of every status the library knows
STATUS_NAMES = {c: lib.cq_status_name(c).decode() for c in range(256)
                if lib.cq_status_name(c) != _UNKNOWN}


class CQError(Exception):
    """A cq_status other than CQ_OK. Attributes: code (int), name ("CQ_ERR_..."),
    message (the library's text), token and channel (-1 when not applicable)."""

    def __init__(self, code, message, token=-1, channel=-1):
        self.code = int(code)
        self.name = lib.cq_status_name(self.code).decode()
        self.message = message or lib.cq_status_desc(self.code).decode()
        self.token = int(token)
        self.channel = int(channel)
        super().__init__("%s: %s" % (self.name, self.message))


class CQNonFiniteError(CQError):
    """CQ_ERR_NONFINITE: an input element is Inf or NaN (token and channel name it)."""


class CQFileError(CQError):
    """CQ_ERR_IO, CQ_ERR_FORMAT, CQ_ERR_CHECKSUM, CQ_ERR_VERSION: a file or image was refused."""


class CQStateError(CQError):
    """CQ_ERR_STATE: the call is not valid in the object's current state (e.g. after flush)."""


class CQBudgetError(CQError):
    """CQ_ERR_BUDGET: the request does not fit the serving pool's byte budget (nothing
    changed)."""


class CQUnsupportedError(CQError):
    """CQ_ERR_UNSUPPORTED: a valid request this codec or path does not support (e.g. a
    sequence position shift, a cut inside a committed key group)."""


_CLASS = {5: CQNonFiniteError, 8: CQFileError, 9: CQFileError, 16: CQFileError,
          17: CQFileError, 14: CQStateError, 20: CQBudgetError, 12: CQUnsupportedError}


def new_err():
    e = CqErr()
    lib.cq_err_clear(e)
    return e


def raise_for(status, err=None):
    """Raise the exception of a non-zero status (err: the call's cq_err, if it took one)."""
    if status == 0:
        return
    cls = _CLASS.get(int(status), CQError)
    if err is not None and err.code == status:
        raise cls(status, err.msg.decode("utf-8", "replace"), err.token, err.channel)
    raise cls(status, None)
