# SPDX-License-Identifier: MIT
"""cache.py - the streaming KV cache of one sequence (include/cq_cache.h):
create with per-layer key/value formats, key group G, fp16 sinks and CQ-4+ outlier
masks; append K/V of a layer; attend (decode and causal prefill) straight over the
compressed data; read tokens back; export a store's packed bytes; save / load /
compare; exact memory accounting.

Shapes (numpy, C order): K and V of an append are [n][n_kv_heads][head_dim]; a
decode query is [n_q_heads][head_dim], a prefill query [n_q][n_q_heads][head_dim]
(float32; n_q_heads a multiple of n_kv_heads: GQA). Threading follows the C
library: append/flush/reset need exclusive use; read, memory and attention may run
concurrently on one cache.
"""
import ctypes
import os

import numpy as np

from ._lib import (AttnOpts, CacheConfig, CacheMem, LayerCodecs, LoadOpts, c_f32p, c_u8p, c_u16p,
                   lib, libc_free)
from .codec import KEY, VALUE, as_fp16_bits, get_codec, role_of
from .errors import new_err, raise_for

_PRECISION = {"default": 0, "exact": 1, "fast": 2}
_MEM_FIELDS = ("payload", "scales", "sidecar", "residual", "sinks", "slack", "headers", "total",
               "tokens", "bits_per_value")


def _f32(a, name, shape):
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    if a.shape != shape:
        raise ValueError("%s must have shape %s, not %s" % (name, shape, a.shape))
    return a


def load_masks(path, n_layers, n_kv_heads, head_dim):
    """The text mask format of ../shared/vectors/masks as a [n_layers][n_kv_heads][head_dim]
    uint8 array (1 = outlier channel)."""
    m = np.zeros((n_layers, n_kv_heads, head_dim), dtype=np.uint8)
    err = new_err()
    raise_for(lib.cq_mask_load(os.fsencode(path), n_layers, n_kv_heads, head_dim,
                               m.ctypes.data_as(c_u8p), ctypes.byref(err)), err)
    return m


def make_config(n_layers, n_kv_heads, head_dim, key_codec="cq4", val_codec="cq4", group=128,
                n_sinks=0, page_tokens=0, max_tokens=0, layer_codecs=None, masks=None,
                kernels=None):
    """A cq_cache_config from Cache's arguments and the objects it points to (keep them
    alive while the config is used)."""
    cfg = CacheConfig()
    lib.cq_cache_config_default(cfg, int(n_layers), int(n_kv_heads), int(head_dim))
    cfg.key_codec = get_codec(key_codec).id
    cfg.val_codec = get_codec(val_codec).id
    cfg.group, cfg.n_sinks = int(group), int(n_sinks)
    cfg.page_tokens, cfg.max_tokens = int(page_tokens), int(max_tokens)
    keep = []
    if layer_codecs is not None:
        if len(layer_codecs) != n_layers:
            raise ValueError("layer_codecs needs %d (key, value) pairs, not %d"
                             % (n_layers, len(layer_codecs)))
        arr = (LayerCodecs * n_layers)(*[LayerCodecs(get_codec(k).id, get_codec(v).id)
                                         for k, v in layer_codecs])
        cfg.layer_codecs = arr
        keep.append(arr)
    if masks is not None:
        if isinstance(masks, (str, bytes, os.PathLike)):
            m = load_masks(masks, n_layers, n_kv_heads, head_dim)
        else:
            m = np.ascontiguousarray(np.asarray(masks) != 0, dtype=np.uint8)
            if m.shape != (n_layers, n_kv_heads, head_dim):
                raise ValueError("masks must have shape %s, not %s"
                                 % ((n_layers, n_kv_heads, head_dim), m.shape))
        cfg.outlier_masks = m.ctypes.data_as(c_u8p)
        keep.append(m)
    if kernels is not None:
        cfg.kernels = kernels.encode()
    return cfg, keep


class Cache:
    """A KV cache. Cache(n_layers, n_kv_heads, head_dim, key_codec="cq4", val_codec="cq4",
    group=128, n_sinks=0, page_tokens=0, max_tokens=0, layer_codecs=None, masks=None,
    kernels=None). Codecs by name or id; layer_codecs: a list of (key, value) per layer;
    masks: [n_layers][n_kv_heads][head_dim] (nonzero = outlier channel) or a mask file
    path, required when a layer uses cq4+ keys. The cache owns C memory: close() frees
    it now (also done when the object is collected; a context manager closes on exit)."""

    def __init__(self, n_layers, n_kv_heads, head_dim, key_codec="cq4", val_codec="cq4",
                 group=128, n_sinks=0, page_tokens=0, max_tokens=0, layer_codecs=None,
                 masks=None, kernels=None):
        cfg, self._keep = make_config(n_layers, n_kv_heads, head_dim, key_codec, val_codec,
                                      group, n_sinks, page_tokens, max_tokens, layer_codecs,
                                      masks, kernels)
        self._c = ctypes.c_void_p()
        err = new_err()
        raise_for(lib.cq_cache_create(cfg, ctypes.byref(self._c), ctypes.byref(err)), err)
        self._shape()

    @classmethod
    def _wrap(cls, handle):
        self = cls.__new__(cls)
        self._c = handle
        self._shape()
        return self

    def _shape(self):
        cfg = lib.cq_cache_get_config(self._c).contents
        self.n_layers, self.n_kv_heads, self.head_dim = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim

    # ------------------------------------------------------------ lifecycle
    def close(self):
        """Free the C cache now (further calls raise ValueError)."""
        h = getattr(self, "_c", None)
        self._c = None
        if h and lib is not None:  # lib may be gone at interpreter shutdown
            lib.cq_cache_free(h)

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _h(self):
        if not self._c:
            raise ValueError("the cache is closed")
        return self._c

    def reset(self):
        """Forget every token (keeps the configuration)."""
        lib.cq_cache_reset(self._h())

    def clone(self):
        """A deep copy."""
        out, err = ctypes.c_void_p(), new_err()
        raise_for(lib.cq_cache_clone(self._h(), ctypes.byref(out), ctypes.byref(err)), err)
        return Cache._wrap(out)

    @property
    def config(self):
        """The configuration as a dict (codec names per layer; group as resolved)."""
        cfg = lib.cq_cache_get_config(self._h()).contents
        layers = [(get_codec(cfg.layer_codecs[L].key).name, get_codec(cfg.layer_codecs[L].val).name)
                  for L in range(cfg.n_layers)] if cfg.layer_codecs else None
        return {"n_layers": cfg.n_layers, "n_kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
                "key_codec": get_codec(cfg.key_codec).name, "val_codec": get_codec(cfg.val_codec).name,
                "layer_codecs": layers, "group": cfg.group, "n_sinks": cfg.n_sinks,
                "page_tokens": cfg.page_tokens, "max_tokens": cfg.max_tokens}

    @property
    def kernels(self):
        """The kernel table in use: "scalar", "avx2" or "avx512"."""
        return lib.cq_cache_kernels(self._h()).decode()

    def tokens(self, layer=0):
        """Tokens appended to layer."""
        self._layer(layer)
        return int(lib.cq_cache_tokens(self._h(), int(layer)))

    def _layer(self, layer):
        if not 0 <= int(layer) < self.n_layers:
            raise ValueError("layer %d out of range [0, %d)" % (layer, self.n_layers))

    # --------------------------------------------------------------- append
    def append(self, layer, K, V):
        """Append n tokens to layer: K, V [n][n_kv_heads][head_dim] (a single token may be
        [n_kv_heads][head_dim]). float16/uint16 go in as fp16; float32 goes through
        cq_cache_append_f32 (rounded to fp16 RNE by the library); float64 is rounded to
        fp16 here. All-or-nothing: on error the cache is unchanged."""
        H, D = self.n_kv_heads, self.head_dim
        K, V = np.asarray(K), np.asarray(V)
        if K.ndim == 2:
            K, V = K[None], V[None] if V.ndim == 2 else V
        if K.ndim != 3 or K.shape[1:] != (H, D) or V.shape != K.shape:
            raise ValueError("K and V must both have shape [n][%d][%d], not %s and %s"
                             % (H, D, K.shape, V.shape))
        n = K.shape[0]
        err = new_err()
        if K.dtype == np.float32 and V.dtype == np.float32:
            k, v = np.ascontiguousarray(K), np.ascontiguousarray(V)
            st = lib.cq_cache_append_f32(self._h(), int(layer), k.ctypes.data_as(c_f32p),
                                         v.ctypes.data_as(c_f32p), n, ctypes.byref(err))
        else:
            k, v = as_fp16_bits(K, "K"), as_fp16_bits(V, "V")
            st = lib.cq_cache_append(self._h(), int(layer), k.ctypes.data_as(c_u16p),
                                     v.ctypes.data_as(c_u16p), n, ctypes.byref(err))
        raise_for(st, err)

    def flush(self):
        """Quantize every partial key group now; seals the cache (appends then raise
        CQStateError until reset)."""
        err = new_err()
        raise_for(lib.cq_cache_flush(self._h(), ctypes.byref(err)), err)

    # ----------------------------------------------------------------- read
    def read(self, layer, head, t0=0, t1=None):
        """Tokens [t0, t1) of (layer, kv head) decoded: (K, V), each [t1-t0][head_dim]
        float32. In-flight tokens come back exactly as their fp16."""
        if t1 is None:
            t1 = self.tokens(layer)
        n = max(int(t1) - int(t0), 0)
        K = np.zeros((n, self.head_dim), dtype=np.float32)
        V = np.zeros((n, self.head_dim), dtype=np.float32)
        err = new_err()
        raise_for(lib.cq_cache_read(self._h(), int(layer), int(head), int(t0), int(t1),
                                    K.ctypes.data_as(c_f32p), V.ctypes.data_as(c_f32p),
                                    ctypes.byref(err)), err)
        return K, V

    def export(self, layer, head, role="key"):
        """The committed tokens of (layer, head, role) in the codec's packed form (for the
        ChannelQuant tiers exactly the bytes Codec.encode gives for the same tokens)."""
        r = role_of(role)
        n, err = ctypes.c_size_t(), new_err()
        raise_for(lib.cq_cache_export(self._h(), int(layer), int(head), r, None, 0,
                                      ctypes.byref(n), ctypes.byref(err)), err)
        out = np.zeros(n.value, dtype=np.uint8)
        raise_for(lib.cq_cache_export(self._h(), int(layer), int(head), r,
                                      out.ctypes.data_as(c_u8p), n.value, ctypes.byref(n),
                                      ctypes.byref(err)), err)
        return out

    def committed(self, layer, head, role="key"):
        """Tokens of (layer, head, role) committed to pages (sinks and in-flight excluded)."""
        return int(lib.cq_cache_committed(self._h(), int(layer), int(head), role_of(role)))

    # ------------------------------------------------------------ attention
    def _opts(self, n_threads, scale, precision):
        if precision not in _PRECISION:
            raise ValueError("precision must be one of %s" % ", ".join(_PRECISION))
        return AttnOpts(int(n_threads), float(scale), _PRECISION[precision])

    def _q_heads(self, q, lead):
        if q.ndim != lead + 2 or q.shape[-1] != self.head_dim or q.shape[-2] % self.n_kv_heads:
            raise ValueError("q must have shape %s[n_q_heads][%d] with n_q_heads a multiple of "
                             "%d, not %s" % ("[n_q]" if lead else "", self.head_dim,
                                             self.n_kv_heads, q.shape))
        return q.shape[-2]

    def attend(self, layer, q, n_threads=1, scale=0.0, precision="default"):
        """Decode attention of one query token over every token of layer: q
        [n_q_heads][head_dim] -> [n_q_heads][head_dim]. scale 0: 1/sqrt(head_dim).
        precision: "default" (fast, unless CQ_ATTN_PRECISION=exact), "exact" or "fast"
        (docs/CACHE.md, Tolerance)."""
        q = np.ascontiguousarray(np.asarray(q, dtype=np.float32))
        Hq = self._q_heads(q, 0)
        out = np.zeros_like(q)
        err, o = new_err(), self._opts(n_threads, scale, precision)
        raise_for(lib.cq_cache_attend(self._h(), int(layer), q.ctypes.data_as(c_f32p), Hq,
                                      out.ctypes.data_as(c_f32p), ctypes.byref(o),
                                      ctypes.byref(err)), err)
        return out

    def attend_prefill(self, layer, q, pos0, n_threads=1, scale=0.0, precision="default"):
        """Causal prefill attention: query i at position pos0 + i attends to [0, pos0 + i].
        q [n_q][n_q_heads][head_dim] -> the same shape."""
        q = np.ascontiguousarray(np.asarray(q, dtype=np.float32))
        Hq = self._q_heads(q, 1)
        out = np.zeros_like(q)
        err, o = new_err(), self._opts(n_threads, scale, precision)
        raise_for(lib.cq_cache_attend_prefill(self._h(), int(layer), q.ctypes.data_as(c_f32p),
                                              q.shape[0], int(pos0), Hq,
                                              out.ctypes.data_as(c_f32p), ctypes.byref(o),
                                              ctypes.byref(err)), err)
        return out

    def attend_ref(self, layer, q, pos0=None, scale=0.0):
        """The library's reference (read back, exact attention in double). q
        [n_q_heads][head_dim] (pos0 default: the last token, i.e. what attend computes) or
        [n_q][n_q_heads][head_dim] with pos0 required."""
        q = np.ascontiguousarray(np.asarray(q, dtype=np.float32))
        single = q.ndim == 2
        if single:
            q = q[None]
            if pos0 is None:
                pos0 = self.tokens(layer) - 1
        elif pos0 is None:
            raise ValueError("pos0 is required for a [n_q][n_q_heads][head_dim] query")
        Hq = self._q_heads(q, 1)
        out = np.zeros_like(q)
        err = new_err()
        raise_for(lib.cq_cache_attend_ref(self._h(), int(layer), q.ctypes.data_as(c_f32p),
                                          q.shape[0], int(pos0), Hq, out.ctypes.data_as(c_f32p),
                                          float(scale), ctypes.byref(err)), err)
        return out[0] if single else out

    # --------------------------------------------------------------- memory
    def memory(self, layer=-1):
        """Exact bytes held (layer -1: the whole cache) as a dict: payload, scales, sidecar,
        residual, sinks, slack, headers, total, tokens, bits_per_value."""
        m = CacheMem()
        raise_for(lib.cq_cache_memory(self._h(), int(layer), ctypes.byref(m)))
        return {f: getattr(m, f) for f in _MEM_FIELDS}

    def allocated_bytes(self, layer=-1):
        """The allocator's own count of bytes held (equals memory()["total"])."""
        return int(lib.cq_cache_allocated_bytes(self._h(), int(layer)))

    # ---------------------------------------------------------- persistence
    def save(self, path):
        """Save atomically (docs/CACHE_FILE.md)."""
        err = new_err()
        raise_for(lib.cq_cache_save(self._h(), os.fsencode(path), ctypes.byref(err)), err)

    def to_bytes(self):
        """The saved image in memory, as bytes."""
        buf, n, err = c_u8p(), ctypes.c_size_t(), new_err()
        raise_for(lib.cq_cache_save_mem(self._h(), ctypes.byref(buf), ctypes.byref(n),
                                        ctypes.byref(err)), err)
        try:
            return ctypes.string_at(buf, n.value)
        finally:
            libc_free(ctypes.cast(buf, ctypes.c_void_p))

    @staticmethod
    def _load_opts(max_bytes, kernels):
        return LoadOpts(int(max_bytes), kernels.encode() if kernels else None)

    @classmethod
    def load(cls, path, max_bytes=0, kernels=None):
        """Restore a saved cache; every check failure raises (CQFileError for format,
        checksum, version and I/O errors)."""
        out, err, o = ctypes.c_void_p(), new_err(), cls._load_opts(max_bytes, kernels)
        raise_for(lib.cq_cache_load_ex(os.fsencode(path), ctypes.byref(o), ctypes.byref(out),
                                       ctypes.byref(err)), err)
        return cls._wrap(out)

    @classmethod
    def from_bytes(cls, data, max_bytes=0, kernels=None):
        """Restore from an in-memory image (to_bytes)."""
        data = bytes(data)
        out, err, o = ctypes.c_void_p(), new_err(), cls._load_opts(max_bytes, kernels)
        raise_for(lib.cq_cache_load_mem_ex(data, len(data), ctypes.byref(o), ctypes.byref(out),
                                           ctypes.byref(err)), err)
        return cls._wrap(out)

    def compare(self, other):
        """Raise CQError (CQ_ERR_MISMATCH, naming the first difference) unless both caches
        hold the same configuration and bytes; return True otherwise."""
        err = new_err()
        raise_for(lib.cq_cache_compare(self._h(), other._h(), ctypes.byref(err)), err)
        return True


__all__ = ["Cache", "load_masks", "KEY", "VALUE"]
