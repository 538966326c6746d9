# SPDX-License-Identifier: MIT
"""_lib.py - loading libchannelquant.so and the ctypes mirror of its public
structs and functions (include/*.h). Nothing here is public API; the package's
modules wrap it.

The library is found, in order: $CHANNELQUANT_LIB (a path to the .so); the
build/ directory of the source tree this package sits in (python/../build);
the system loader (libchannelquant.so.<MAJOR>: LD_LIBRARY_PATH, ldconfig's
paths); <prefix>/lib of the running Python and /usr/local/lib. The layout of
every mirrored struct is checked against the library (cq_abi_struct_size), so a
library whose structs differ is refused instead of corrupting memory.
"""
import ctypes
import ctypes.util
import os

ABI_MAJOR = 0  # the soname this binding is written for: libchannelquant.so.0

c_u8p = ctypes.POINTER(ctypes.c_uint8)
c_u16p = ctypes.POINTER(ctypes.c_uint16)
c_f32p = ctypes.POINTER(ctypes.c_float)


class LibraryNotFound(OSError):
    """libchannelquant.so could not be loaded (the message lists where it looked)."""


# ------------------------------------------------------------------ structs

class CqErr(ctypes.Structure):  # cq_error.h: cq_err
    _fields_ = [("code", ctypes.c_int), ("token", ctypes.c_int64),
                ("channel", ctypes.c_int32), ("msg", ctypes.c_char * 224)]


class CodecCfg(ctypes.Structure):  # cq_registry.h: cq_codec_cfg
    _fields_ = [("dim", ctypes.c_uint32), ("group", ctypes.c_uint32),
                ("residual", ctypes.c_uint32), ("mask", c_u8p), ("seed", ctypes.c_uint64),
                ("reserved", ctypes.c_uint32 * 4)]


_CFGP = ctypes.POINTER(CodecCfg)
_ERRP = ctypes.POINTER(CqErr)
CHECK_FN = ctypes.CFUNCTYPE(ctypes.c_int, _CFGP, ctypes.c_int)
PACKED_FN = ctypes.CFUNCTYPE(ctypes.c_size_t, _CFGP, ctypes.c_int, ctypes.c_uint32)
ENCODE_FN = ctypes.CFUNCTYPE(ctypes.c_int, _CFGP, ctypes.c_int, c_u16p, ctypes.c_uint32,
                             c_u8p, ctypes.c_size_t, _ERRP)
DECODE_FN = ctypes.CFUNCTYPE(ctypes.c_int, _CFGP, ctypes.c_int, c_u8p, ctypes.c_size_t,
                             ctypes.c_uint32, c_f32p)
BPV_FN = ctypes.CFUNCTYPE(ctypes.c_double, _CFGP, ctypes.c_int, ctypes.c_uint32)
UNIT_FN = ctypes.CFUNCTYPE(ctypes.c_uint32, _CFGP, ctypes.c_int)


class CodecTraits(ctypes.Structure):  # cq_registry.h: cq_codec_traits
    _fields_ = [("id", ctypes.c_int), ("name", ctypes.c_char_p), ("family", ctypes.c_char_p),
                ("layout", ctypes.c_char_p), ("bits", ctypes.c_double), ("flags", ctypes.c_uint),
                ("check", CHECK_FN), ("packed_bytes", PACKED_FN), ("encode", ENCODE_FN),
                ("decode", DECODE_FN), ("modeled_bpv", BPV_FN), ("unit_tokens", UNIT_FN),
                ("window_tokens", UNIT_FN)]


class LayerCodecs(ctypes.Structure):  # cq_cache.h: cq_layer_codecs
    _fields_ = [("key", ctypes.c_int), ("val", ctypes.c_int)]


class CacheConfig(ctypes.Structure):  # cq_cache.h: cq_cache_config
    _fields_ = [("n_layers", ctypes.c_uint32), ("n_kv_heads", ctypes.c_uint32),
                ("head_dim", ctypes.c_uint32), ("key_codec", ctypes.c_int),
                ("val_codec", ctypes.c_int), ("layer_codecs", ctypes.POINTER(LayerCodecs)),
                ("group", ctypes.c_uint32), ("n_sinks", ctypes.c_uint32),
                ("page_tokens", ctypes.c_uint32), ("max_tokens", ctypes.c_uint32),
                ("outlier_masks", c_u8p), ("force_generic", ctypes.c_uint32),
                ("kernels", ctypes.c_char_p)]


class CacheMem(ctypes.Structure):  # cq_cache.h: cq_cache_mem
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("payload", "scales", "sidecar", "residual", "sinks", "slack", "headers",
                 "total", "tokens")] + [("bits_per_value", ctypes.c_double)]


class AttnOpts(ctypes.Structure):  # cq_cache.h: cq_attn_opts
    _fields_ = [("n_threads", ctypes.c_uint32), ("scale", ctypes.c_float),
                ("precision", ctypes.c_uint32), ("pool", ctypes.c_void_p)]


class LoadOpts(ctypes.Structure):  # cq_cache.h: cq_cache_load_opts
    _fields_ = [("max_bytes", ctypes.c_uint64), ("kernels", ctypes.c_char_p)]


_U64F = ctypes.c_uint64


class PrefixStats(ctypes.Structure):  # cq_prefix.h: cq_prefix_stats
    _fields_ = ([(n, _U64F) for n in ("budget_bytes", "used_bytes", "charged_bytes",
                                      "referenced_bytes", "cached_bytes", "lru_bytes")]
                + [(n, ctypes.c_uint32) for n in ("live_blocks", "referenced_blocks",
                                                  "cached_blocks", "lru_blocks")]
                + [(n, _U64F) for n in ("meta_bytes", "allocs", "blocks_allocated",
                                        "budget_refusals", "commits", "duplicates", "lookups",
                                        "hits", "blocks_reused", "tokens_reused",
                                        "blocks_evicted", "bytes_evicted", "blocks_orphaned")])


class KVPoolConfig(ctypes.Structure):  # cq_serve.h: cq_kvpool_config
    _fields_ = [("cache", CacheConfig), ("budget_bytes", _U64F), ("model_hash", _U64F)]


class SeqMem(ctypes.Structure):  # cq_serve.h: cq_seq_mem
    _fields_ = ([(n, _U64F) for n in ("private_bytes", "shared_bytes", "slack", "tokens")]
                + [("blocks", ctypes.c_uint32), ("shared_blocks", ctypes.c_uint32)])


class KVPoolMem(ctypes.Structure):  # cq_serve.h: cq_kvpool_mem
    _fields_ = ([(n, _U64F) for n in ("referenced", "cached", "arena_slack", "tails",
                                      "sequences", "index", "tables", "total", "shared_saved",
                                      "arena_bytes")]
                + [("n_seqs", ctypes.c_uint32), ("prefix", PrefixStats)])


STRUCTS = {"cq_err": CqErr, "cq_codec_cfg": CodecCfg, "cq_codec_traits": CodecTraits,
           "cq_layer_codecs": LayerCodecs, "cq_cache_config": CacheConfig,
           "cq_cache_mem": CacheMem, "cq_attn_opts": AttnOpts,
           "cq_cache_load_opts": LoadOpts, "cq_prefix_stats": PrefixStats,
           "cq_kvpool_config": KVPoolConfig, "cq_seq_mem": SeqMem, "cq_kvpool_mem": KVPoolMem}

# ---------------------------------------------------------------- functions

_P = ctypes.c_void_p
_TRAITSP = ctypes.POINTER(CodecTraits)
_CFGCP = ctypes.POINTER(CacheConfig)
_I, _U32, _I32, _U64, _SZ = ctypes.c_int, ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64, ctypes.c_size_t
PROTOTYPES = {
    # name: (restype, argtypes)
    "cq_version": (ctypes.c_uint, []),
    "cq_version_string": (ctypes.c_char_p, []),
    "cq_abi_struct_size": (_SZ, [ctypes.c_char_p]),
    "cq_status_name": (ctypes.c_char_p, [_I]),
    "cq_status_desc": (ctypes.c_char_p, [_I]),
    "cq_err_clear": (None, [_ERRP]),
    "cq_codec_count": (_SZ, []),
    "cq_codec_at": (_TRAITSP, [_SZ]),
    "cq_codec_get": (_TRAITSP, [_I]),
    "cq_codec_find": (_TRAITSP, [ctypes.c_char_p]),
    "cq_codec_cfg_default": (None, [_CFGP, _U32]),
    "cq_codec_supports": (_I, [_TRAITSP, _CFGP, _I]),
    "cq_codec_unit_tokens": (_U32, [_TRAITSP, _CFGP, _I]),
    "cq_codec_window_tokens": (_U32, [_TRAITSP, _CFGP, _I]),
    "cq_cache_config_default": (None, [_CFGCP, _U32, _U32, _U32]),
    "cq_cache_create": (_I, [_CFGCP, ctypes.POINTER(_P), _ERRP]),
    "cq_cache_free": (None, [_P]),
    "cq_cache_reset": (None, [_P]),
    "cq_cache_clone": (_I, [_P, ctypes.POINTER(_P), _ERRP]),
    "cq_mask_load": (_I, [ctypes.c_char_p, _U32, _U32, _U32, c_u8p, _ERRP]),
    "cq_cache_append": (_I, [_P, _U32, c_u16p, c_u16p, _U32, _ERRP]),
    "cq_cache_append_f32": (_I, [_P, _U32, c_f32p, c_f32p, _U32, _ERRP]),
    "cq_cache_flush": (_I, [_P, _ERRP]),
    "cq_cache_tokens": (_U32, [_P, _U32]),
    "cq_cache_get_config": (_CFGCP, [_P]),
    "cq_cache_get_layout": (_I, [_P, _U32, _I]),
    "cq_cache_read": (_I, [_P, _U32, _U32, _U32, _U32, c_f32p, c_f32p, _ERRP]),
    "cq_cache_memory": (_I, [_P, _I32, ctypes.POINTER(CacheMem)]),
    "cq_cache_allocated_bytes": (_U64, [_P, _I32]),
    "cq_cache_export": (_I, [_P, _U32, _U32, _I, c_u8p, _SZ, ctypes.POINTER(_SZ), _ERRP]),
    "cq_cache_committed": (_U32, [_P, _U32, _U32, _I]),
    "cq_cache_kernels": (ctypes.c_char_p, [_P]),
    "cq_cache_attend": (_I, [_P, _U32, c_f32p, _U32, c_f32p, ctypes.POINTER(AttnOpts), _ERRP]),
    "cq_cache_attend_prefill": (_I, [_P, _U32, c_f32p, _U32, _U32, _U32, c_f32p,
                                     ctypes.POINTER(AttnOpts), _ERRP]),
    "cq_cache_attend_ref": (_I, [_P, _U32, c_f32p, _U32, _U32, _U32, c_f32p, ctypes.c_float,
                                 _ERRP]),
    "cq_cache_save": (_I, [_P, ctypes.c_char_p, _ERRP]),
    "cq_cache_save_mem": (_I, [_P, ctypes.POINTER(c_u8p), ctypes.POINTER(_SZ), _ERRP]),
    "cq_cache_load_ex": (_I, [ctypes.c_char_p, ctypes.POINTER(LoadOpts), ctypes.POINTER(_P),
                              _ERRP]),
    "cq_cache_load_mem_ex": (_I, [ctypes.c_char_p, _SZ, ctypes.POINTER(LoadOpts),
                                  ctypes.POINTER(_P), _ERRP]),
    "cq_cache_compare": (_I, [_P, _P, _ERRP]),
    # cq_serve.h
    "cq_kvpool_create": (_I, [ctypes.POINTER(KVPoolConfig), ctypes.POINTER(_P), _ERRP]),
    "cq_kvpool_free": (None, [_P]),
    "cq_kvpool_config_hash": (_U64, [_P]),
    "cq_kvpool_block_bytes": (_U64, [_P]),
    "cq_kvpool_sink_bytes": (_U64, [_P]),
    "cq_kvpool_tail_bytes": (_U64, [_P]),
    "cq_seq_create": (_I, [_P, ctypes.POINTER(_P), _ERRP]),
    "cq_seq_free": (None, [_P]),
    "cq_seq_fork": (_I, [_P, ctypes.POINTER(_P), _ERRP]),
    "cq_seq_truncate": (_I, [_P, _U32, _ERRP]),
    "cq_seq_shift": (_I, [_P, _U32, _U32, _I32, _ERRP]),
    "cq_seq_publish": (_I, [_P, ctypes.POINTER(_U32), _U32, _ERRP]),
    "cq_seq_adopt_prefix": (_I, [_P, ctypes.POINTER(_U32), _U32, ctypes.POINTER(_U32), _ERRP]),
    "cq_seq_append": (_I, [_P, _U32, c_u16p, c_u16p, _U32, _ERRP]),
    "cq_seq_append_f32": (_I, [_P, _U32, c_f32p, c_f32p, _U32, _ERRP]),
    "cq_seq_tokens": (_U32, [_P, _U32]),
    "cq_seq_read": (_I, [_P, _U32, _U32, _U32, _U32, c_f32p, c_f32p, _ERRP]),
    "cq_seq_export": (_I, [_P, _U32, _U32, _I, c_u8p, _SZ, ctypes.POINTER(_SZ), _ERRP]),
    "cq_seq_attend": (_I, [_P, _U32, c_f32p, _U32, c_f32p, ctypes.POINTER(AttnOpts), _ERRP]),
    "cq_seq_attend_prefill": (_I, [_P, _U32, c_f32p, _U32, _U32, _U32, c_f32p,
                                   ctypes.POINTER(AttnOpts), _ERRP]),
    "cq_seq_memory": (_I, [_P, ctypes.POINTER(SeqMem)]),
    "cq_kvpool_memory": (_I, [_P, ctypes.POINTER(KVPoolMem)]),
    "cq_kvpool_allocated_bytes": (_U64, [_P]),
    "cq_kvpool_check": (_I, [_P, _ERRP]),
    "cq_kvpool_attend": (_I, [_P, _U32, ctypes.POINTER(_P), _U32, c_f32p, _U32, c_f32p,
                              ctypes.POINTER(AttnOpts), _ERRP]),
    "cq_kvpool_attend_prefill": (_I, [_P, _U32, ctypes.POINTER(_P), _U32, ctypes.POINTER(_U32),
                                      ctypes.POINTER(_U32), c_f32p, _U32, c_f32p,
                                      ctypes.POINTER(AttnOpts), _ERRP]),
    "cq_kvpool_save_seq": (_I, [_P, ctypes.POINTER(_U32), _U32, ctypes.c_char_p, _ERRP]),
    "cq_kvpool_load_seq": (_I, [_P, ctypes.c_char_p, ctypes.POINTER(_P), _ERRP]),
    "cq_kvpool_save_cached": (_I, [_P, ctypes.c_char_p, _ERRP]),
    "cq_kvpool_load_cached": (_I, [_P, ctypes.c_char_p, _ERRP]),
}


def _candidates():
    env = os.environ.get("CHANNELQUANT_LIB")
    if env:
        return [env], True
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.join(os.path.dirname(os.path.dirname(here)), "build")
    soname = "libchannelquant.so.%d" % ABI_MAJOR
    out = [os.path.join(tree, soname)]
    out.append(soname)  # the system loader's search
    found = ctypes.util.find_library("channelquant")
    if found:
        out.append(found)
    for prefix in (os.environ.get("PREFIX"), os.path.realpath(os.sys.prefix), "/usr/local"):
        if prefix:
            out.append(os.path.join(prefix, "lib", soname))
    return out, False


def _load():
    paths, explicit = _candidates()
    tried = []
    for p in paths:
        if os.sep in p and not os.path.exists(p):
            tried.append("%s (absent)" % p)
            continue
        try:
            return ctypes.CDLL(p)
        except OSError as e:
            tried.append("%s (%s)" % (p, e))
            if explicit:
                break
    raise LibraryNotFound("libchannelquant.so.%d not found; set CHANNELQUANT_LIB to its path, "
                          "build the source tree (make), or make install. Tried: %s"
                          % (ABI_MAJOR, "; ".join(tried)))


def _bind(lib):
    for name, (res, args) in PROTOTYPES.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    major = lib.cq_version() // 10000
    if major != ABI_MAJOR:
        raise LibraryNotFound("%s is version %s; this binding needs major version %d"
                              % (lib._name, lib.cq_version_string().decode(), ABI_MAJOR))
    for cname, py in STRUCTS.items():
        size = lib.cq_abi_struct_size(cname.encode())
        if size != ctypes.sizeof(py):
            raise LibraryNotFound("%s: struct %s is %d bytes in the library, %d in the binding "
                                  "(python/channelquant/_lib.py): update the binding"
                                  % (lib._name, cname, size, ctypes.sizeof(py)))
    return lib


lib = _bind(_load())

# free() of the C library the process uses: cq_cache_save_mem's buffer is malloc()ed
libc_free = ctypes.CDLL(None).free
libc_free.argtypes = [ctypes.c_void_p]
libc_free.restype = None
