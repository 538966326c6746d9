# SPDX-License-Identifier: MIT
"""serve.py - the serving pool (include/cq_serve.h, docs/SERVING.md): one model's
compressed KV memory for many sequences under a byte budget fixed at creation.
KVPool is created from Cache's options plus budget_bytes (page_tokens and max_tokens
are the pool's own: blocks of G tokens); Sequence is one sequence in it: append,
tokens, read, export, attend / attend_prefill, fork (committed blocks shared),
truncate, publish / adopt_prefix (the prefix index), memory. A sequence holds exactly
what a Cache with the same options and page_tokens = group holds after the same
appends (reads and attention bit-identical). Every operation is all-or-nothing: a
refusal (CQBudgetError for CQ_ERR_BUDGET) changes nothing.

Tier: TOOL-GRADE in C (docs/EMBEDDING.md); this binding follows it.
"""
import ctypes
import os
import weakref

import numpy as np

from ._lib import KVPoolConfig, KVPoolMem, SeqMem, c_f32p, c_u8p, c_u16p, lib
from .cache import Cache, make_config
from .codec import as_fp16_bits, role_of
from .errors import new_err, raise_for

_SEQ_MEM = ("private_bytes", "shared_bytes", "slack", "tokens", "blocks", "shared_blocks")
_POOL_MEM = ("referenced", "cached", "arena_slack", "tails", "sequences", "index", "tables",
             "total", "shared_saved", "arena_bytes", "n_seqs")


def _struct_dict(s):
    return {f: getattr(s, f) for f, _ in s._fields_}


class KVPool:
    """KVPool(n_layers, n_kv_heads, head_dim, budget_bytes, key_codec="cq4",
    val_codec="cq4", group=128, n_sinks=0, layer_codecs=None, masks=None, kernels=None,
    model_hash=0). Owns C memory: close() frees the pool and every sequence it still
    holds (their Sequence objects then raise ValueError); a context manager closes on
    exit. Codecs with an fp16 window (KIVI) raise CQUnsupportedError."""

    def __init__(self, n_layers, n_kv_heads, head_dim, budget_bytes, key_codec="cq4",
                 val_codec="cq4", group=128, n_sinks=0, layer_codecs=None, masks=None,
                 kernels=None, model_hash=0):
        self._c = None
        self._seqs = weakref.WeakSet()
        cache, self._keep = make_config(n_layers, n_kv_heads, head_dim, key_codec, val_codec,
                                        group, n_sinks, 0, 0, layer_codecs, masks, kernels)
        pc = KVPoolConfig(cache, int(budget_bytes), int(model_hash))
        h, err = ctypes.c_void_p(), new_err()
        raise_for(lib.cq_kvpool_create(pc, ctypes.byref(h), ctypes.byref(err)), err)
        self._c = h
        self.n_layers, self.n_kv_heads = int(n_layers), int(n_kv_heads)
        self.head_dim = int(head_dim)
        self.budget_bytes = int(budget_bytes)

    # ------------------------------------------------------------ lifecycle
    def close(self):
        """Free the pool and every sequence it holds now."""
        h = getattr(self, "_c", None)
        self._c = None
        for s in list(getattr(self, "_seqs", ())):
            s._c = None
        if h and lib is not None:
            lib.cq_kvpool_free(h)

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _h(self):
        if not self._c:
            raise ValueError("the pool is closed")
        return self._c

    def sequence(self):
        """A new empty sequence (nothing charged)."""
        return Sequence(self)

    # ----------------------------------------------------------- accounting
    @property
    def config_hash(self):
        return int(lib.cq_kvpool_config_hash(self._h()))

    @property
    def block_bytes(self):
        """Bytes a block of G positions (every layer and store) is charged."""
        return int(lib.cq_kvpool_block_bytes(self._h()))

    @property
    def sink_bytes(self):
        return int(lib.cq_kvpool_sink_bytes(self._h()))

    @property
    def tail_bytes(self):
        return int(lib.cq_kvpool_tail_bytes(self._h()))

    def memory(self):
        """cq_kvpool_memory as a dict (referenced, cached, arena_slack, tails, sequences,
        index, tables, total, shared_saved, arena_bytes, n_seqs) plus "prefix": the prefix
        index's statistics (budget_bytes, used_bytes, live_blocks, budget_refusals, ...)."""
        m = KVPoolMem()
        raise_for(lib.cq_kvpool_memory(self._h(), ctypes.byref(m)))
        out = {f: getattr(m, f) for f in _POOL_MEM}
        out["prefix"] = _struct_dict(m.prefix)
        return out

    def allocated_bytes(self):
        """The allocator's own count (equals memory()["total"])."""
        return int(lib.cq_kvpool_allocated_bytes(self._h()))

    # ------------------------------------------------------------ many sequences
    def _seq_array(self, seqs):
        seqs = list(seqs)
        for x in seqs:
            if not isinstance(x, Sequence) or x.pool is not self:
                raise ValueError("every sequence must be a Sequence of this pool")
        return seqs, (ctypes.c_void_p * max(len(seqs), 1))(*[x._h() for x in seqs])

    def attend(self, layer, seqs, q, n_threads=1, scale=0.0, precision="default"):
        """cq_kvpool_attend: one query token per sequence, q [n_seqs][n_q_heads][head_dim]
        -> the same shape; each row bit-identical to seqs[i].attend(layer, q[i])."""
        seqs, arr = self._seq_array(seqs)
        q = np.ascontiguousarray(np.asarray(q, dtype=np.float32))
        if q.ndim != 3 or q.shape[0] != len(seqs) or q.shape[2] != self.head_dim:
            raise ValueError("q must be [n_seqs][n_q_heads][head_dim]")
        out = np.zeros_like(q)
        err, o = new_err(), Cache._opts(self, n_threads, scale, precision)
        raise_for(lib.cq_kvpool_attend(self._h(), int(layer), arr, len(seqs),
                                       q.ctypes.data_as(c_f32p), q.shape[1],
                                       out.ctypes.data_as(c_f32p), ctypes.byref(o),
                                       ctypes.byref(err)), err)
        return out

    def attend_prefill(self, layer, seqs, qs, pos0s, n_threads=1, scale=0.0,
                       precision="default"):
        """cq_kvpool_attend_prefill: qs[i] [n_i][n_q_heads][head_dim] are sequence i's new
        tokens (appended) at positions pos0s[i] + j; returns the list of outputs, each
        bit-identical to seqs[i].attend_prefill(layer, qs[i], pos0s[i])."""
        seqs, arr = self._seq_array(seqs)
        qs = [np.ascontiguousarray(np.asarray(x, dtype=np.float32)) for x in qs]
        if len(qs) != len(seqs) or len(pos0s) != len(seqs):
            raise ValueError("one query block and one first position per sequence")
        if any(x.ndim != 3 or x.shape[1:] != qs[0].shape[1:] or x.shape[2] != self.head_dim
               for x in qs):
            raise ValueError("each query block must be [n][n_q_heads][head_dim]")
        Hq = qs[0].shape[1] if qs else 0
        ofs = np.zeros(len(seqs) + 1, dtype=np.uint32)
        ofs[1:] = np.cumsum([x.shape[0] for x in qs])
        q = (np.concatenate(qs) if qs else np.zeros((0, Hq, self.head_dim), np.float32))
        out = np.zeros_like(q)
        pos = np.ascontiguousarray(np.asarray(pos0s, dtype=np.uint32))
        err, o = new_err(), Cache._opts(self, n_threads, scale, precision)
        raise_for(lib.cq_kvpool_attend_prefill(
            self._h(), int(layer), arr, len(seqs), ofs.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
            pos.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), q.ctypes.data_as(c_f32p), Hq,
            out.ctypes.data_as(c_f32p), ctypes.byref(o), ctypes.byref(err)), err)
        return [out[ofs[i]:ofs[i + 1]] for i in range(len(seqs))]

    # ------------------------------------------------------------ files
    def load_sequence(self, path):
        """cq_kvpool_load_seq: a Sequence restored from a sequence file (version 3; a
        version 1/2 cache file loads as one sequence when the configurations agree)."""
        h, err = ctypes.c_void_p(), new_err()
        raise_for(lib.cq_kvpool_load_seq(self._h(), os.fsencode(path), ctypes.byref(h),
                                         ctypes.byref(err)), err)
        return Sequence(self, h)

    def save_cached(self, path):
        """cq_kvpool_save_cached: the published (cached) blocks, a warm start of the
        prefix cache."""
        err = new_err()
        raise_for(lib.cq_kvpool_save_cached(self._h(), os.fsencode(path), ctypes.byref(err)), err)

    def load_cached(self, path):
        """cq_kvpool_load_cached: the blocks of a save_cached file into the prefix index."""
        err = new_err()
        raise_for(lib.cq_kvpool_load_cached(self._h(), os.fsencode(path), ctypes.byref(err)), err)

    def check(self):
        """The pool's invariants; raise CQError (CQ_ERR_MISMATCH) naming the first broken
        one, return True otherwise."""
        err = new_err()
        raise_for(lib.cq_kvpool_check(self._h(), ctypes.byref(err)), err)
        return True


class Sequence:
    """A sequence of a KVPool: Sequence(pool) or pool.sequence(). Shapes as Cache's.
    free() releases its blocks and charge now (also on collection; a context manager
    frees on exit)."""

    _opts = Cache._opts
    _q_heads = Cache._q_heads
    _layer = Cache._layer

    def __init__(self, pool, _handle=None):
        self._c = None
        self.pool = pool
        self.n_layers, self.n_kv_heads = pool.n_layers, pool.n_kv_heads
        self.head_dim = pool.head_dim
        if _handle is None:
            _handle, err = ctypes.c_void_p(), new_err()
            raise_for(lib.cq_seq_create(pool._h(), ctypes.byref(_handle), ctypes.byref(err)), err)
        self._c = _handle
        pool._seqs.add(self)

    def free(self):
        """Release the blocks and the charge now (further calls raise ValueError)."""
        h = getattr(self, "_c", None)
        self._c = None
        if h and lib is not None:
            lib.cq_seq_free(h)

    close = free

    def __del__(self):
        self.free()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def _h(self):
        if not self._c:
            raise ValueError("the sequence is freed (or its pool closed)")
        return self._c

    # ------------------------------------------------------------ structure
    def fork(self):
        """A new sequence sharing every committed block (CQBudgetError when the copy of
        the open block and tail does not fit)."""
        h, err = ctypes.c_void_p(), new_err()
        raise_for(lib.cq_seq_fork(self._h(), ctypes.byref(h), ctypes.byref(err)), err)
        return Sequence(self.pool, h)

    def truncate(self, n_tokens):
        """Keep the first n_tokens (CQBudgetError when a shared kept block cannot be
        copied). A cut inside a committed key group keeps a partial block: the kept tokens
        keep their group's codes, later appends start a new group (docs/SERVING.md)."""
        err = new_err()
        raise_for(lib.cq_seq_truncate(self._h(), int(n_tokens), ctypes.byref(err)), err)

    def shift(self, p0, p1, delta):
        """Position shifts are refused by the library (CQUnsupportedError, its message
        says why: docs/SERVING.md)."""
        err = new_err()
        raise_for(lib.cq_seq_shift(self._h(), int(p0), int(p1), int(delta), ctypes.byref(err)),
                  err)

    @staticmethod
    def _tok(tokens):
        t = np.ascontiguousarray(np.asarray(tokens, dtype=np.uint32).reshape(-1))
        return t, t.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32))

    def publish(self, tokens):
        """Put the committed full blocks tokens[0, n) spells into the prefix index."""
        t, p = self._tok(tokens)
        err = new_err()
        raise_for(lib.cq_seq_publish(self._h(), p, t.size, ctypes.byref(err)), err)

    def adopt_prefix(self, tokens):
        """On an empty sequence: take the longest cached run of full blocks spelling
        tokens; return the number of tokens now held (append from there)."""
        t, p = self._tok(tokens)
        n, err = ctypes.c_uint32(), new_err()
        raise_for(lib.cq_seq_adopt_prefix(self._h(), p, t.size, ctypes.byref(n),
                                          ctypes.byref(err)), err)
        return int(n.value)

    # ---------------------------------------------------------- append/read
    def tokens(self, layer=0):
        self._layer(layer)
        return int(lib.cq_seq_tokens(self._h(), int(layer)))

    def append(self, layer, K, V):
        """As Cache.append (float32 through cq_seq_append_f32, float16/uint16 as fp16)."""
        H, D = self.n_kv_heads, self.head_dim
        K, V = np.asarray(K), np.asarray(V)
        if K.ndim == 2:
            K, V = K[None], V[None] if V.ndim == 2 else V
        if K.ndim != 3 or K.shape[1:] != (H, D) or V.shape != K.shape:
            raise ValueError("K and V must both have shape [n][%d][%d], not %s and %s"
                             % (H, D, K.shape, V.shape))
        n, err = K.shape[0], new_err()
        if K.dtype == np.float32 and V.dtype == np.float32:
            k, v = np.ascontiguousarray(K), np.ascontiguousarray(V)
            st = lib.cq_seq_append_f32(self._h(), int(layer), k.ctypes.data_as(c_f32p),
                                       v.ctypes.data_as(c_f32p), n, ctypes.byref(err))
        else:
            k, v = as_fp16_bits(K, "K"), as_fp16_bits(V, "V")
            st = lib.cq_seq_append(self._h(), int(layer), k.ctypes.data_as(c_u16p),
                                   v.ctypes.data_as(c_u16p), n, ctypes.byref(err))
        raise_for(st, err)

    def read(self, layer, head, t0=0, t1=None):
        """Tokens [t0, t1) of (layer, kv head): (K, V), each [t1-t0][head_dim] float32."""
        if t1 is None:
            t1 = self.tokens(layer)
        n = max(int(t1) - int(t0), 0)
        K = np.zeros((n, self.head_dim), dtype=np.float32)
        V = np.zeros((n, self.head_dim), dtype=np.float32)
        err = new_err()
        raise_for(lib.cq_seq_read(self._h(), int(layer), int(head), int(t0), int(t1),
                                  K.ctypes.data_as(c_f32p), V.ctypes.data_as(c_f32p),
                                  ctypes.byref(err)), err)
        return K, V

    def export(self, layer, head, role="key"):
        """The committed tokens of (layer, head, role), packed (as Cache.export)."""
        r = role_of(role)
        n, err = ctypes.c_size_t(), new_err()
        raise_for(lib.cq_seq_export(self._h(), int(layer), int(head), r, None, 0,
                                    ctypes.byref(n), ctypes.byref(err)), err)
        out = np.zeros(n.value, dtype=np.uint8)
        raise_for(lib.cq_seq_export(self._h(), int(layer), int(head), r,
                                    out.ctypes.data_as(c_u8p), n.value, ctypes.byref(n),
                                    ctypes.byref(err)), err)
        return out

    # ------------------------------------------------------------ attention
    def attend(self, layer, q, n_threads=1, scale=0.0, precision="default"):
        """As Cache.attend: q [n_q_heads][head_dim] -> the same shape."""
        q = np.ascontiguousarray(np.asarray(q, dtype=np.float32))
        Hq = self._q_heads(q, 0)
        out = np.zeros_like(q)
        err, o = new_err(), self._opts(n_threads, scale, precision)
        raise_for(lib.cq_seq_attend(self._h(), int(layer), q.ctypes.data_as(c_f32p), Hq,
                                    out.ctypes.data_as(c_f32p), ctypes.byref(o),
                                    ctypes.byref(err)), err)
        return out

    def attend_prefill(self, layer, q, pos0, n_threads=1, scale=0.0, precision="default"):
        """As Cache.attend_prefill: q [n_q][n_q_heads][head_dim] -> the same shape."""
        q = np.ascontiguousarray(np.asarray(q, dtype=np.float32))
        Hq = self._q_heads(q, 1)
        out = np.zeros_like(q)
        err, o = new_err(), self._opts(n_threads, scale, precision)
        raise_for(lib.cq_seq_attend_prefill(self._h(), int(layer), q.ctypes.data_as(c_f32p),
                                            q.shape[0], int(pos0), Hq,
                                            out.ctypes.data_as(c_f32p), ctypes.byref(o),
                                            ctypes.byref(err)), err)
        return out

    def save(self, path, tokens=None):
        """cq_kvpool_save_seq: the sequence as a sequence file (version 3); with its token
        ids its published blocks are published again on load (sharing re-established)."""
        err = new_err()
        arr, ptr = (None, None) if tokens is None else self._tok(tokens)
        raise_for(lib.cq_kvpool_save_seq(self._h(), ptr, 0 if arr is None else len(arr),
                                         os.fsencode(path), ctypes.byref(err)), err)

    def memory(self):
        """cq_seq_memory as a dict: private_bytes, shared_bytes, slack, tokens, blocks,
        shared_blocks."""
        m = SeqMem()
        raise_for(lib.cq_seq_memory(self._h(), ctypes.byref(m)))
        return {f: getattr(m, f) for f in _SEQ_MEM}


__all__ = ["KVPool", "Sequence"]
