# SPDX-License-Identifier: MIT
"""channelquant - Python binding of the ChannelQuant library (libchannelquant.so)
over ctypes: the codec registry, the streaming KV cache, the serving pool
(KVPool, Sequence), and the library's errors
as exceptions. numpy arrays in and out; no compiler needed.

    import numpy as np, channelquant as cq
    c = cq.get_codec("cq4")
    packed = c.encode(np.random.randn(100, 64).astype(np.float16), "key", group=32)
    kh = c.decode(packed, 100, 64, "key", group=32)
    with cq.Cache(n_layers=2, n_kv_heads=2, head_dim=64, key_codec="cq4") as cache:
        cache.append(0, K, V)              # [n][2][64]
        out = cache.attend(0, q)           # q [n_q_heads][64]

The library is located as python/channelquant/_lib.py describes (CHANNELQUANT_LIB,
the source tree's build/, the system loader, /usr/local/lib).
"""
from ._lib import LibraryNotFound, lib as _lib
from .cache import Cache, load_masks
from .codec import KEY, VALUE, Codec, codecs, get_codec
from .errors import (STATUS_NAMES, CQBudgetError, CQError, CQFileError, CQNonFiniteError,
                     CQStateError, CQUnsupportedError)
from .serve import KVPool, Sequence

__version__ = _lib.cq_version_string().decode()


def version():
    """The linked library's version string (equal to __version__)."""
    return _lib.cq_version_string().decode()


def library_path():
    """The path of the loaded libchannelquant.so."""
    return _lib._name


__all__ = ["Cache", "load_masks", "KVPool", "Sequence", "CQBudgetError", "CQUnsupportedError",
           "KEY", "VALUE", "Codec", "codecs", "get_codec", "CQError",
           "CQFileError", "CQNonFiniteError", "CQStateError", "STATUS_NAMES", "LibraryNotFound",
           "version", "library_path"]
