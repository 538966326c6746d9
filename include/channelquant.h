/*
 * channelquant.h - umbrella header of the ChannelQuant library.
 *
 * ChannelQuant compresses the KV cache of transformer LLMs with the KIVI /
 * KVQuant recipe (per-channel grouped INT4 keys, per-token INT4 values, static
 * fp16 key outlier channels) as a bit-exact, streaming codec. The algorithm is
 * prior art (KIVI, ICML 2024; KVQuant, 2024); this library is its bit-exact
 * reference, fast cache and tooling.
 */
#ifndef CHANNELQUANT_H
#define CHANNELQUANT_H

#define CQ_VERSION_MAJOR 0
#define CQ_VERSION_MINOR 1
#define CQ_VERSION_PATCH 0
#define CQ_VERSION_STRING "0.1.0"

#include "cq_cache.h"
#include "cq_codec.h"
#include "cq_engine.h"
#include "cq_pool.h"
#include "cq_error.h"
#include "cq_fp16.h"
#include "cq_registry.h"
#include "cq_synth.h"
#include "cq_util.h"
#include "cq_vectors.h"

#endif
