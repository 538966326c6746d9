# SPDX-License-Identifier: MIT
"""codec.py - the codec registry (include/cq_registry.h): every codec of the
library, ChannelQuant's tiers and the baselines, with one interface: encode a
[T][D] block of one role (keys or values) into the codec's packed bytes, and
decode them back to [T][D] float32.

Input blocks are fp16: a float16 array is used as is, a uint16 array as fp16
bit patterns, float32/float64 are rounded to fp16 (round to nearest even, what
numpy's astype(float16) does and the library's contract assumes).
"""
import ctypes

import numpy as np

from ._lib import CodecCfg, c_f32p, c_u8p, c_u16p, lib
from .errors import CQError, new_err, raise_for

KEY, VALUE = 0, 1
_ROLES = {"key": KEY, "k": KEY, "keys": KEY, "value": VALUE, "v": VALUE, "values": VALUE,
          KEY: KEY, VALUE: VALUE}

F_KEYS, F_VALUES, F_STREAMING, F_OFFLINE, F_EXACT, F_OURS = 1, 2, 4, 8, 16, 32


def role_of(role):
    """'key'/'k'/0 -> 0, 'value'/'v'/1 -> 1."""
    try:
        return _ROLES[role.lower() if isinstance(role, str) else role]
    except (KeyError, AttributeError):
        raise ValueError("role must be 'key' or 'value', not %r" % (role,)) from None


def as_fp16_bits(x, name="x", ndim=None):
    """A C-contiguous uint16 array of fp16 bit patterns from float16/uint16/float32/float64."""
    a = np.asarray(x)
    if ndim is not None and a.ndim != ndim:
        raise ValueError("%s must have %d dimensions, not shape %s" % (name, ndim, a.shape))
    if a.dtype == np.float16:
        a = a.view(np.uint16)
    elif a.dtype == np.uint16:
        pass
    elif a.dtype in (np.float32, np.float64):
        with np.errstate(over="ignore"):
            a = a.astype(np.float16).view(np.uint16)
    else:
        raise TypeError("%s: dtype %s is not float16, uint16 (fp16 bits), float32 or float64"
                        % (name, a.dtype))
    return np.ascontiguousarray(a)


class Codec:
    """One codec of the registry. Attributes: id, name, family, layout, bits (nominal
    code bits per value), flags; keys / values / streaming / exact / ours (booleans)."""

    def __init__(self, traits_ptr):
        self._t = traits_ptr
        t = traits_ptr.contents
        self.id = int(t.id)
        self.name = t.name.decode()
        self.family = t.family.decode()
        self.layout = t.layout.decode()
        self.bits = float(t.bits)
        self.flags = int(t.flags)
        self.keys = bool(self.flags & F_KEYS)
        self.values = bool(self.flags & F_VALUES)
        self.streaming = bool(self.flags & F_STREAMING)
        self.exact = bool(self.flags & F_EXACT)
        self.ours = bool(self.flags & F_OURS)

    def __repr__(self):
        return "Codec(%d, %r)" % (self.id, self.name)

    def _cfg(self, dim, group=None, residual=None, mask=None, seed=None):
        cfg = CodecCfg()
        lib.cq_codec_cfg_default(cfg, int(dim))
        if group is not None:
            cfg.group = int(group)
        if residual is not None:
            cfg.residual = int(residual)
        if seed is not None:
            cfg.seed = int(seed)
        keep = None
        if mask is not None:
            keep = np.ascontiguousarray(np.asarray(mask), dtype=np.uint8)
            if keep.shape != (dim,):
                raise ValueError("mask must have shape (%d,), not %s" % (dim, keep.shape))
            cfg.mask = keep.ctypes.data_as(c_u8p)
        return cfg, keep

    def check(self, dim, role="key", **cfg):
        """Raise CQError when this codec cannot code role at dim (and cfg)."""
        c, keep = self._cfg(dim, **cfg)
        raise_for(lib.cq_codec_supports(self._t, c, role_of(role)))
        del keep

    def supports(self, dim, role="key", **cfg):
        """True when this codec can code role at dim (and cfg)."""
        try:
            self.check(dim, role, **cfg)
            return True
        except CQError:
            return False

    def packed_bytes(self, T, dim, role="key", **cfg):
        """Exact bytes encode writes for a [T][dim] block."""
        c, keep = self._cfg(dim, **cfg)
        r = role_of(role)
        raise_for(lib.cq_codec_supports(self._t, c, r))
        if T < 1:
            raise ValueError("T must be >= 1")
        return int(self._t.contents.packed_bytes(c, r, int(T)))

    def unit_tokens(self, dim, role="key", **cfg):
        """Tokens per independently coded unit when streamed (a cache's group)."""
        c, keep = self._cfg(dim, **cfg)
        return int(lib.cq_codec_unit_tokens(self._t, c, role_of(role)))

    def encode(self, x, role="key", *, group=None, residual=None, mask=None, seed=None):
        """Encode a [T][D] block (fp16; see the module doc) of role; returns the packed
        bytes as a uint8 array. group: key group G (ChannelQuant, default 128); residual:
        KIVI's fp16 window; mask: D outlier flags (cq4+); seed: rotation codecs."""
        bits = as_fp16_bits(x, "x", 2)
        T, D = bits.shape
        if T < 1 or D < 1:
            raise ValueError("x must be a non-empty [T][D] block, not shape %s" % (bits.shape,))
        c, keep = self._cfg(D, group, residual, mask, seed)
        r = role_of(role)
        raise_for(lib.cq_codec_supports(self._t, c, r))
        n = int(self._t.contents.packed_bytes(c, r, T))
        out = np.zeros(n, dtype=np.uint8)
        err = new_err()
        st = self._t.contents.encode(c, r, bits.ctypes.data_as(c_u16p), T,
                                     out.ctypes.data_as(c_u8p), n, ctypes.byref(err))
        raise_for(st, err)
        del keep
        return out

    def decode(self, data, T, dim, role="key", *, group=None, residual=None, mask=None,
               seed=None):
        """Decode packed bytes (exactly packed_bytes(T, dim, role) of them) to [T][dim]
        float32."""
        buf = np.ascontiguousarray(np.frombuffer(bytes(data), dtype=np.uint8)
                                   if isinstance(data, (bytes, bytearray, memoryview))
                                   else np.asarray(data), dtype=np.uint8)
        c, keep = self._cfg(dim, group, residual, mask, seed)
        r = role_of(role)
        raise_for(lib.cq_codec_supports(self._t, c, r))
        if T < 1:
            raise ValueError("T must be >= 1")
        n = int(self._t.contents.packed_bytes(c, r, int(T)))
        if buf.size != n:
            raise ValueError("%s %s of [%d][%d]: %d bytes given, the packed size is %d"
                             % (self.name, "keys" if r == KEY else "values", T, dim, buf.size, n))
        out = np.zeros((int(T), int(dim)), dtype=np.float32)
        st = self._t.contents.decode(c, r, buf.ctypes.data_as(c_u8p), n, int(T),
                                     out.ctypes.data_as(c_f32p))
        raise_for(st)
        del keep
        return out


def codecs():
    """Every codec of the registry, in registry order."""
    return [Codec(lib.cq_codec_at(i)) for i in range(lib.cq_codec_count())]


def get_codec(name_or_id):
    """A codec by name (case-insensitive: "cq4", "cq4+", "q4_0", ...) or stable id."""
    if isinstance(name_or_id, Codec):
        return name_or_id
    if isinstance(name_or_id, str):
        p = lib.cq_codec_find(name_or_id.encode())
    else:
        p = lib.cq_codec_get(int(name_or_id))
    if not p:
        raise KeyError("unknown codec %r (channelquant.codecs() lists them)" % (name_or_id,))
    return Codec(p)
