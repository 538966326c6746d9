#!/bin/sh
# SPDX-License-Identifier: MIT
# redis_demo.sh - issue 18's measurement of the Redis tier with the real model through
# `cq batch --kv-store` (not part of `make test`): two processes on one machine and one
# Redis. Process A serves 32 prompts sharing a prefix and publishes their prompt blocks;
# process B serves the same prompts, adopts them from Redis and checks with
# --check-logits that the logits of every sampled position equal each prompt run alone
# with a full local prefill, bit for bit. For cq4/cq4 and fp16/fp16: value bytes per
# token fetched, prefill tokens computed by A and B, time to first token of A, B and a
# run without the tier, Redis used_memory after A. Then (unless --no-cluster) the same
# for cq4/cq4 on a Redis Cluster of 3 masters with a replica each; a master killed and
# its replica promoted, B again; then the promoted master (without a replica now)
# killed, B again: the answers checked each time, hits and misses reported.
# Starts its own redis-server processes on free 127.0.0.1 ports (no persistence, under
# a temporary directory) and stops every one on exit. Run from the repository root
# after `make`; prints a markdown table and one JSON line.
# shellcheck disable=SC2086,SC2154 # word-split option lists on purpose; port, pid, pp are
# set by redis_lib.sh.inc's redis_start and by eval
set -u
usage() {
    cat <<'EOF'
usage: tools/redis_demo.sh [--cq PATH] [--shared DIR] [-m MODEL] [-n N] [-t T]
                           [--suffix-chars C] [--no-cluster] [--json-only]

Issue 18's two-process measurement of the Redis tier through `cq batch --kv-store`:
process A serves 32 prompts sharing a prefix and publishes; process B serves the same
prompts and adopts (--check-logits: B's logits equal a full local prefill bit for bit).
For cq4/cq4 and fp16/fp16 on one redis-server, then for cq4/cq4 on a 3-master cluster
with replicas, after a master is killed and its replica promoted, and after a master
without a replica is killed. Prints a markdown table and a JSON line.
  --cq PATH          the cq binary (default build/cq)
  --shared DIR       the shared directory (default ../shared): eval/tinystories_val.txt
  -m MODEL           the model (default: cq's, tinyqwen-hd64-kbias, self-trained)
  -n N               tokens generated per prompt (default 32)
  -t T               threads (default 2)
  --suffix-chars C   the characters of each prompt's own part (default 300): the prompts
                     are two paragraphs of the text (lines 5 and 7, 275 tokens with BOS)
                     followed by C characters of two other lines of it
  --no-cluster       only the single server
  --json-only        print only the JSON line
Needs redis-server and redis-cli; only 127.0.0.1 is used.
EOF
}
CQ=build/cq
SHARED=../shared
MODEL=""
N=32
T=2
SUFFIX=300
CLUSTER=1
JSON_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --cq) CQ=$2; shift 2 ;;
    --shared) SHARED=$2; shift 2 ;;
    -m) MODEL=$2; shift 2 ;;
    -n) N=$2; shift 2 ;;
    -t) T=$2; shift 2 ;;
    --suffix-chars) SUFFIX=$2; shift 2 ;;
    --no-cluster) CLUSTER=0; shift ;;
    --json-only) JSON_ONLY=1; shift ;;
    *) echo "redis_demo.sh: unknown option '$1' (--help)" >&2; exit 2 ;;
    esac
done
for v in "$N" "$T" "$SUFFIX"; do
    case $v in '' | *[!0-9]*) echo "redis_demo.sh: not a number: '$v'" >&2; exit 2 ;; esac
done
[ -x "$CQ" ] || { echo "redis_demo.sh: $CQ not found (run make, or give --cq)" >&2; exit 2; }
TEXT="$SHARED/eval/tinystories_val.txt"
[ -r "$TEXT" ] || { echo "redis_demo.sh: $TEXT not found (--shared DIR)" >&2; exit 2; }
LIB=$(dirname "$0")/../tests/cli/redis_lib.sh.inc
[ -r "$LIB" ] || { echo "redis_demo.sh: $LIB not found" >&2; exit 2; }

NAME=redis_demo
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/redis_lib.sh.inc
. "$LIB"
redis_require
say() { [ "$JSON_ONLY" = 1 ] || printf '%s\n' "$*"; }
log() { printf '%s\n' "$*" >&2; }

# the prompts: a shared prefix of two paragraphs, each followed by its own two lines (cut)
P=$tmp/prompts32.txt
pre=$(sed -n '5p;7p' "$TEXT" | tr '\n' ' ')
awk 'length > 40' "$TEXT" | sed -n '101,164p' | awk '{ s = (NR % 2 == 1) ? $0 : s " " $0 } NR % 2 == 0 { print s }' |
    cut -c1-"$SUFFIX" | while IFS= read -r s; do printf '%s%s\n' "$pre" "$s"; done >"$P"
MOPT=""
[ -n "$MODEL" ] && MOPT="-m $MODEL"
BATCH="$CQ batch --prompts $P -n $N -t $T $MOPT --json"

jnum() { # key file: the first number after "key": (null: empty)
    grep -o "\"$1\": [0-9.e+-]*" "$2" | head -1 | sed 's/.*: //'
}
logits_ok() { # file: "equal" / "DIFFER" / "-" (not checked) from --check-logits
    if grep -q '"logits": {"positions": [0-9]*, "differing": 0, "unstable": 0}' "$1" &&
        grep -q '"check": {"sequences": [0-9]*, "differing": 0' "$1"; then echo equal
    elif grep -q '"logits": ' "$1"; then echo DIFFER
    else echo -; fi
}
used_memory() { # port: INFO memory used_memory
    redis-cli -h 127.0.0.1 -p "$1" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'
}
G=128 # the blocks of the default configuration
run() { # label out-file [cq batch options...]: one cq batch run; records its exit status
    lbl=$1 out=$2
    shift 2
    log "redis_demo: $lbl"
    $BATCH "$@" >"$out" 2>"$out.err"
    echo $? >"$out.rc"
    [ "$(cat "$out.rc")" = 0 ] || { log "redis_demo: $lbl: exit $(cat "$out.rc")"; sed 's/^/  /' "$out.err" | tail -5 >&2; }
}
ROWS=$tmp/rows
JS=$tmp/json
: >"$ROWS"
: >"$JS"
row() { # scenario kv file [redis_bytes]: a table row and a JSON object
    f=$3
    pf=$(jnum prefill_tokens "$f")
    tm=$(jnum ttft_mean_s "$f")
    td=$(jnum ttft_median_s "$f")
    hits=$(jnum hits "$f")
    miss=$(jnum misses "$f")
    ad=$(jnum tokens_adopted "$f")
    bf=$(jnum bytes_fetched "$f")
    bp=$(jnum bytes_published "$f")
    lk=$(logits_ok "$f")
    pos=$(grep -o '"logits": {"positions": [0-9]*' "$f" | sed 's/.*: //')
    bpt=$(awk -v b="${bf:-0}" -v h="${hits:-0}" -v g=$G 'BEGIN { if (h > 0) printf "%.1f", b / (h * g); else print "-" }')
    bpa=$(awk -v b="${bf:-0}" -v a="${ad:-0}" 'BEGIN { if (a > 0) printf "%.1f", b / a; else print "-" }')
    mr=$(awk -v h="${hits:-0}" -v m="${miss:-0}" 'BEGIN { if (h + m > 0) printf "%.3f", m / (h + m); else print "-" }')
    rm_=${4:--}
    tm3=$(awk -v v="$tm" 'BEGIN { if (v == "") print "-"; else printf "%.3f", v }')
    td3=$(awk -v v="$td" 'BEGIN { if (v == "") print "-"; else printf "%.3f", v }')
    printf '| %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |\n' "$1" "$2" \
        "${pf:--}" "${ad:--}" "${hits:--}" "${miss:--}" "$mr" "${bf:--}" "$bpt" "$bpa" "$tm3" "$td3" "${bp:--}" "$rm_" \
        "$lk" >>"$ROWS"
    printf '{"scenario": "%s", "kv": "%s", "exit": %s, "prefill_tokens": %s, "tokens_adopted": %s, "hits": %s, "misses": %s, "bytes_fetched": %s, "bytes_per_fetched_token": %s, "bytes_per_adopted_token": %s, "ttft_mean_s": %s, "ttft_median_s": %s, "bytes_published": %s, "redis_used_memory_growth": %s, "check_logits": %s, "check_logits_positions": %s}\n' \
        "$1" "$2" "$(cat "$f.rc")" "${pf:-null}" "${ad:-null}" "${hits:-null}" "${miss:-null}" "${bf:-null}" \
        "$(echo "$bpt" | sed 's/^-$/null/')" "$(echo "$bpa" | sed 's/^-$/null/')" "${tm:-null}" "${td:-null}" \
        "${bp:-null}" "$(echo "$rm_" | sed 's/^-$/null/')" "$(echo "\"$lk\"" | sed 's/^"-"$/null/')" "${pos:-null}" >>"$JS"
}

# ------------------------------------------------------------ one redis-server
redis_start "$tmp/r" - || { echo "$NAME: FAIL: no redis-server started"; exit 1; }
SP=$port
U=redis://127.0.0.1:$SP
for kv in cq4/cq4 fp16/fp16; do
    k=$(echo "$kv" | tr '/' '_')
    redis-cli -h 127.0.0.1 -p "$SP" flushall >/dev/null
    m0=$(used_memory "$SP")
    run "$kv: without the tier" "$tmp/l_$k" --kv "$kv"
    run "$kv: A publishes" "$tmp/a_$k" --kv "$kv" --kv-store "$U"
    m1=$(used_memory "$SP")
    run "$kv: B adopts, --check-logits" "$tmp/b_$k" --kv "$kv" --kv-store "$U" --check-logits
    eval "mem_$k=$((m1 - m0))"
    eval "used_$k=$m1"
done
# "local, no tier": the same prompts with only the process's own prefix cache
for kv in cq4/cq4 fp16/fp16; do
    k=$(echo "$kv" | tr '/' '_')
    row "local, no tier" "$kv" "$tmp/l_$k"
    row "1 server: A" "$kv" "$tmp/a_$k" "$(eval echo \$mem_$k)"
    row "1 server: B" "$kv" "$tmp/b_$k"
done

# ------------------------------------------------------------ a 3-master cluster
if [ "$CLUSTER" = 1 ]; then
    CL="--cluster-enabled yes --cluster-node-timeout 1000 --cluster-require-full-coverage no"
    ports=""
    seeds=""
    for i in 1 2 3 4 5 6; do
        redis_start "$tmp/c$i" - $CL --cluster-config-file "$tmp/c$i/nodes.conf" ||
            { echo "$NAME: FAIL: cluster node $i did not start"; exit 1; }
        ports="$ports $port"
        seeds="$seeds${seeds:+,}127.0.0.1:$port"
        eval "pid_$port=$pid"
    done
    set -- $ports
    rcli() { p=$1; shift; redis-cli -h 127.0.0.1 -p "$p" "$@"; }
    state() { rcli "$1" cluster info 2>/dev/null | tr -d '\r' | awk -F: '/^cluster_state/ { print $2 }'; }
    addrs=""
    for p in $ports; do addrs="$addrs 127.0.0.1:$p"; done
    rcli "$1" --cluster create $addrs --cluster-replicas 1 --cluster-yes >"$tmp/create" 2>&1 ||
        { echo "$NAME: FAIL: cluster create"; tail -5 "$tmp/create"; exit 1; }
    wait_ok() { # every live node reports cluster_state ok
        i=0
        while [ $i -lt 300 ]; do
            all=1
            for p in $ports; do
                eval "pp=\$pid_$p"
                kill -0 "$pp" 2>/dev/null || continue
                [ "$(state "$p")" = ok ] || all=0
            done
            [ $all = 1 ] && return 0
            sleep 0.1
            i=$((i + 1))
        done
        echo "$NAME: the cluster is not ok"
        return 1
    }
    masters() { # the ports of the live masters
        for p in $ports; do
            eval "pp=\$pid_$p"
            kill -0 "$pp" 2>/dev/null || continue
            [ "$(rcli "$p" role | head -1)" = master ] && echo "$p"
        done
    }
    cmem() { # used_memory summed over the live masters
        s=0
        for p in $(masters); do s=$((s + $(used_memory "$p"))); done
        echo $s
    }
    synced() { # every live replica's link up with its master's key count
        for p in $ports; do
            eval "pp=\$pid_$p"
            kill -0 "$pp" 2>/dev/null || continue
            [ "$(rcli "$p" role | head -1)" = slave ] || continue
            rcli "$p" info replication | tr -d '\r' | grep -q '^master_link_status:up' || return 1
            mp=$(rcli "$p" info replication | tr -d '\r' | awk -F: '$1 == "master_port" { print $2 }')
            [ "$(rcli "$p" dbsize)" = "$(rcli "$mp" dbsize)" ] || return 1
        done
        return 0
    }
    wait_ok || exit 1
    CU=redis-cluster://$seeds
    kv=cq4/cq4
    m0=$(cmem)
    run "cluster: A publishes" "$tmp/ca" --kv "$kv" --kv-store "$CU"
    m1=$(cmem)
    i=0
    until synced; do
        i=$((i + 1))
        [ $i -lt 300 ] || { echo "$NAME: the replicas did not sync"; break; }
        sleep 0.1
    done
    keys_before=0
    for p in $(masters); do keys_before=$((keys_before + $(rcli "$p" dbsize))); done
    run "cluster: B adopts, --check-logits" "$tmp/cb" --kv "$kv" --kv-store "$CU" --check-logits
    row "cluster: A" "$kv" "$tmp/ca" "$((m1 - m0))"
    row "cluster: B" "$kv" "$tmp/cb"
    # kill the master holding the most blocks; its replica is promoted (the cluster's own
    # failover after cluster-node-timeout, else CLUSTER FAILOVER TAKEOVER on the replica)
    victim=""
    most=-1
    for p in $(masters); do
        d=$(rcli "$p" dbsize)
        [ "$d" -gt "$most" ] && { most=$d; victim=$p; }
    done
    rep=""
    for p in $ports; do
        [ "$(rcli "$p" role | head -1)" = slave ] || continue
        mp=$(rcli "$p" info replication | tr -d '\r' | awk -F: '$1 == "master_port" { print $2 }')
        [ "$mp" = "$victim" ] && rep=$p
    done
    eval "redis_kill \$pid_$victim"
    log "redis_demo: master $victim killed ($most keys), replica $rep"
    say_after="the master with the most blocks ($most keys) killed; its replica promoted"
    how=automatic
    i=0
    until [ -n "$rep" ] && [ "$(rcli "$rep" role | head -1)" = master ]; do
        i=$((i + 1))
        if [ $i = 100 ] && [ -n "$rep" ]; then
            rcli "$rep" cluster failover takeover >/dev/null
            how=takeover
        fi
        [ $i -lt 300 ] || { echo "$NAME: the replica was not promoted"; break; }
        sleep 0.1
    done
    wait_ok
    say_after="$say_after ($how)"
    run "cluster after failover: B, --check-logits" "$tmp/cf" --kv "$kv" --kv-store "$CU" --check-logits
    row "cluster, master killed, replica promoted: B" "$kv" "$tmp/cf"
    # the promoted master has no replica: kill it too, its blocks are gone (misses)
    [ -n "$rep" ] && eval "redis_kill \$pid_$rep"
    log "redis_demo: promoted master $rep killed (no replica)"
    sleep 3 # cluster-node-timeout 1000: the others mark it failed
    run "cluster, a master lost: B, --check-logits" "$tmp/cl" --kv "$kv" --kv-store "$CU" --check-logits
    row "cluster, the promoted master killed too (no replica): B" "$kv" "$tmp/cl"
fi

# ------------------------------------------------------------ the report
if [ "$JSON_ONLY" = 0 ]; then
    bq=$(awk -v b="$(jnum bytes_fetched "$tmp/b_cq4_cq4")" -v h="$(jnum hits "$tmp/b_cq4_cq4")" -v g=$G 'BEGIN { printf "%.1f", b / (h * g) }')
    bf=$(awk -v b="$(jnum bytes_fetched "$tmp/b_fp16_fp16")" -v h="$(jnum hits "$tmp/b_fp16_fp16")" -v g=$G 'BEGIN { printf "%.1f", b / (h * g) }')
    say "cq batch across processes (Redis): $(wc -l <"$P") prompts ($(jnum prompt_tokens "$tmp/a_cq4_cq4") prompt tokens for the run), -n $N, -t $T, G $G"
    say "model: $(grep -o '"model_note": "[^"]*"' "$tmp/a_cq4_cq4" | sed 's/.*: "//; s/"$//')"
    say ""
    say "| scenario | K/V | prompt tokens computed | tokens adopted | Redis hits / misses | miss rate | bytes fetched | B/token fetched | B/token adopted | TTFT mean / median (s) | bytes published | Redis used_memory growth | --check-logits |"
    say "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    [ "$JSON_ONLY" = 1 ] || cat "$ROWS"
    say ""
    say "B/token fetched: bytes fetched / (hits x G); fp16 / cq4: $(awk -v a="$bf" -v b="$bq" 'BEGIN { printf "%.2f", a / b }')x"
    [ "$CLUSTER" = 1 ] && say "cluster: $say_after"
    say "prompt tokens computed (cq4/cq4): without the tier $(jnum prefill_tokens "$tmp/l_cq4_cq4"), A $(jnum prefill_tokens "$tmp/a_cq4_cq4"), B $(jnum prefill_tokens "$tmp/b_cq4_cq4")"
    say ""
fi
{
    printf '{"prompts": %s, "n": %s, "threads": %s, "suffix_chars": %s, "results": [' "$(wc -l <"$P")" "$N" "$T" "$SUFFIX"
    sed '$!s/$/,/' "$JS" | tr -d '\n'
    printf ']}\n'
}
bad=0
for f in "$tmp"/*.rc; do [ "$(cat "$f")" = 0 ] || bad=1; done
exit $bad
