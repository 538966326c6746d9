/* SPDX-License-Identifier: MIT */
/*
 * channelquant.h - umbrella header of the ChannelQuant library.
 *
 * ChannelQuant compresses the KV cache of transformer LLMs with the KIVI /
 * KVQuant recipe (per-channel grouped INT4 keys, per-token INT4 values, static
 * fp16 key outlier channels) as a bit-exact, streaming codec. The algorithm is
 * prior art (KIVI, ICML 2024; KVQuant, 2024); this library is its bit-exact
 * reference, fast cache and tooling.
 *
 * Tier: umbrella - includes the stable core and the tool-grade engine, synth, util
 * and vectors headers (not cq_model.h / cq_eval.h); docs/EMBEDDING.md lists which is which.
 */
#ifndef CHANNELQUANT_H
#define CHANNELQUANT_H

#include "cq_cache.h"
#include "cq_codec.h"
#include "cq_engine.h"
#include "cq_pool.h"
#include "cq_error.h"
#include "cq_file.h"
#include "cq_fp16.h"
#include "cq_prefix.h"
#include "cq_registry.h"
#include "cq_synth.h"
#include "cq_util.h"
#include "cq_vectors.h"
#include "cq_version.h"

#endif
