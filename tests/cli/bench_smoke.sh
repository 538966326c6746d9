#!/bin/sh
# SPDX-License-Identifier: MIT
# Smoke test of `cq bench --quick`: it runs, verifies its own outputs (the bench
# exits 1 when an append or an attention result fails verification), and prints
# every row in markdown, --json and --csv. Timings are never asserted.
CQ=${1:-build/cq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
"$CQ" bench --help >"$tmp/help" 2>&1 || { echo "bench_smoke: --help failed"; fail=1; }
"$CQ" bench --quick --json >"$tmp/json" 2>"$tmp/err" || { echo "bench_smoke: --quick --json failed"; cat "$tmp/err"; fail=1; }
rows=$(grep -c '"D":' "$tmp/json")
[ "$rows" = 16 ] || { echo "bench_smoke: expected 16 json rows, got $rows"; fail=1; }
grep -q '"fraction": 0.0000' "$tmp/json" && { echo "bench_smoke: a row has no bandwidth fraction"; fail=1; }
# the bandwidth probe: three readings per row, median within the extremes, the spread
# rule applied to the spread printed, every kernel's median positive
awk -F'[:,] *' '/"D":/ {
    for (i = 1; i < NF; i++) v[$i] = $(i + 1)
    if (v["\"read_readings\""] != 3) { print "readings " v["\"read_readings\""]; bad = 1 }
    lo = v["\"read_min_gbs\""] + 0; md = v["\"read_gbs\""] + 0; hi = v["\"read_max_gbs\""] + 0
    if (!(lo > 0 && lo <= md && md <= hi)) { print "min/median/max " lo " " md " " hi; bad = 1 }
    sp = v["\"read_spread\""] + 0; un = v["\"read_unstable\""]
    if ((sp > 0.2) != (un == "true")) { print "spread " sp " unstable " un; bad = 1 }
    if (!(v["\"read_sum_gbs\""] > 0 && v["\"read_nt_gbs\""] > 0 && v["\"read_pinned_gbs\""] > 0)) {
        print "a probe kernel read 0"; bad = 1 }
    n++
} END { exit bad || n != 16 }' "$tmp/json" || { echo "bench_smoke: json probe fields wrong"; fail=1; }
# the products' ceiling: on a SIMD table every row has a floor from a measured peak, and its
# fraction is the ceiling over the row's probe median (scalar: no peak, all zero)
simd=1
grep -q '"kernels": "scalar"' "$tmp/json" && simd=0
awk -F'[:,] *' -v simd=$simd '/"D":/ {
    for (i = 1; i < NF; i++) v[$i] = $(i + 1)
    fl = v["\"products_floor_ns\""] + 0; cg = v["\"products_ceiling_gbs\""] + 0
    cf = v["\"products_ceiling_fraction\""] + 0; md = v["\"read_gbs\""] + 0
    if (simd && !(fl > 0 && cg > 0)) { print "no floor"; bad = 1 }
    if (!simd && (fl != 0 || cg != 0)) { print "a scalar floor"; bad = 1 }
    d = cf * md - cg; if (d < 0) d = -d
    if (d > 0.01 * cg + 0.01) { print "ceiling fraction " cf " x " md " != " cg; bad = 1 }
} END { exit bad }' "$tmp/json" || { echo "bench_smoke: products ceiling fields wrong"; fail=1; }
[ "$(grep -c '"append_decode_warm_gbs": [0-9.]*, "append_prefill_warm_gbs": [0-9.]*,' "$tmp/json")" = 16 ] &&
    ! grep -q '_warm_gbs": 0\.000,' "$tmp/json" ||
    { echo "bench_smoke: a row lacks a reused-page append figure"; fail=1; }
"$CQ" bench --quick --csv --dims 40 --contexts 300 --threads 2 --formats cq4+,cq8 >"$tmp/csv" 2>"$tmp/err" ||
    { echo "bench_smoke: --csv with odd sizes failed"; cat "$tmp/err"; fail=1; }
[ "$(wc -l <"$tmp/csv")" = 3 ] || { echo "bench_smoke: expected header + 2 csv rows"; cat "$tmp/csv"; fail=1; }
head -1 "$tmp/csv" | grep -q ',read_gbs,read_min_gbs,read_max_gbs,read_spread,read_unstable,read_readings,' ||
    { echo "bench_smoke: csv lacks the probe's columns"; fail=1; }
CQ_KERNELS=scalar "$CQ" bench --quick --dims 64 --contexts 512 --formats cq4 >"$tmp/md" 2>"$tmp/err" ||
    { echo "bench_smoke: scalar kernels failed"; cat "$tmp/err"; fail=1; }
grep -q '^| 64 | 512 | cq4/cq4 | 2 |.* | [0-9]*%\( unstable\)\? | [0-9]*% | - |$' "$tmp/md" ||
    { echo "bench_smoke: markdown row (with the probe spread) missing"; cat "$tmp/md"; fail=1; }
grep -q 'kernels: scalar' "$tmp/md" || { echo "bench_smoke: CQ_KERNELS=scalar not honoured"; fail=1; }
"$CQ" bench --quick --dims 64 --contexts 512 --formats cq4,cq4+ --precision fast >"$tmp/fast" 2>"$tmp/err" ||
    { echo "bench_smoke: --precision fast failed"; cat "$tmp/err"; fail=1; }
grep -q 'attention precision fast' "$tmp/fast" || { echo "bench_smoke: --precision fast not honoured"; fail=1; }
CQ_ATTN_PRECISION=fast "$CQ" bench --quick --dims 64 --contexts 512 --formats cq4 >"$tmp/fast2" 2>"$tmp/err" ||
    { echo "bench_smoke: CQ_ATTN_PRECISION=fast failed"; cat "$tmp/err"; fail=1; }
grep -q 'attention precision fast' "$tmp/fast2" || { echo "bench_smoke: CQ_ATTN_PRECISION=fast not honoured"; fail=1; }
"$CQ" bench --precision sloppy >/dev/null 2>&1
[ $? = 2 ] || { echo "bench_smoke: a bad precision must exit 2"; fail=1; }
"$CQ" bench --quick --dims 64 --contexts 512 --kv fp16/fp16,cq4+/cq4 -t 1 --json >"$tmp/kv" 2>"$tmp/err" ||
    { echo "bench_smoke: --kv K/V spelling failed"; cat "$tmp/err"; fail=1; }
grep -q '"format": "cq4+/cq4"' "$tmp/kv" && grep -q '"cache_bits_per_value"' "$tmp/kv" ||
    { echo "bench_smoke: --kv rows lack the K/V name or cache_bits_per_value"; head -5 "$tmp/kv"; fail=1; }
"$CQ" bench --formats q9 >/dev/null 2>&1
[ $? = 2 ] || { echo "bench_smoke: a bad format must exit 2"; fail=1; }
"$CQ" bench --json --csv >/dev/null 2>&1
[ $? = 2 ] || { echo "bench_smoke: --json with --csv must exit 2"; fail=1; }
# --kernels: every table the CPU runs, twelve kernels each, checked against scalar (exit 0),
# with the values per cycle measured and required (positive for the kernels that read a stream)
"$CQ" bench --kernels --quick --csv >"$tmp/kcsv" 2>"$tmp/err" ||
    { echo "bench_smoke: --kernels failed"; cat "$tmp/err"; fail=1; }
grep -q '^scalar,acc_i4q,128,' "$tmp/kcsv" || { echo "bench_smoke: --kernels scalar row missing"; fail=1; }
[ "$(grep -c '^scalar,' "$tmp/kcsv")" = 16 ] && [ "$(grep -c '^[a-z0-9]*,step_' "$tmp/kcsv")" -ge 3 ] &&
    [ $(( ($(wc -l <"$tmp/kcsv") - 1) % 16 )) = 0 ] ||
    { echo "bench_smoke: --kernels rows not 13 kernels + 3 steps per table"; fail=1; }
awk -F, 'NR > 1 && $2 !~ /^step_/ && !($5 > 0) { bad = 1 }
         NR > 1 && $2 ~ /^(dot|acc)_/ && !($6 > 0 && $7 > 0) { bad = 1 }
         NR > 1 && $2 ~ /^step_/ && !($4 > 0 && $11 > 0 && $12 > 0) { bad = 1 }
         END { exit bad }' "$tmp/kcsv" || { echo "bench_smoke: --kernels values per cycle missing"; fail=1; }
# on an x86-64 CPU with AVX2 the SIMD tables' steps carry a floor from a measured peak
if grep -q '^avx2,' "$tmp/kcsv"; then
    awk -F, '$1 == "avx2" && $2 ~ /^step_/ && !($8 > 0 && $10 > 0) { bad = 1 } END { exit bad }' \
        "$tmp/kcsv" || { echo "bench_smoke: --kernels avx2 steps lack a floor"; fail=1; }
fi
"$CQ" bench --kernels --quick --json >"$tmp/kjson" 2>"$tmp/err" &&
    grep -q '"clock_ghz": [0-9.]*, "peaks": \[.*\], "target_fraction": 0.80, "probe": \[{"threads": 1, "read_gbs": [0-9.]*, ' "$tmp/kjson" &&
    grep -q '"step_cq4_exact": [0-9.]*' "$tmp/kjson" && grep -q '"step_fp16_at_target": [0-9.]*' "$tmp/kjson" ||
    { echo "bench_smoke: --kernels --json lacks the clock, the peaks, the probe or the steps"; fail=1; }
# where the CPU runs vpdpbusd, the two pairs are measured too (a rate, no products)
if grep -q '"id": "vnni_zmm"' "$tmp/kjson"; then
    grep -q '"id": "vnni_fma_zmm", "instruction": "vpdpbusd + vfmadd231ps zmm", "per_ns": [0-9.]*, "per_cycle": [0-9.]*, "pair": true}' "$tmp/kjson" &&
        grep -q '"id": "fma_cvt_zmm", [^}]*"pair": true}' "$tmp/kjson" ||
        { echo "bench_smoke: --kernels --json lacks the instruction pairs"; fail=1; }
fi
CQ_KERNELS=avx2 "$CQ" bench --kernels --quick >/dev/null 2>&1 || { echo "bench_smoke: --kernels md failed"; fail=1; }
"$CQ" bench --kernels --dims 40 >/dev/null 2>&1
[ $? = 2 ] || { echo "bench_smoke: --kernels with D=40 must exit 2"; fail=1; }
# --serving: one tiny row (2 sequences of 300 tokens, D 64, cq4 and cq8 beside the fp16
# baseline): the rows carry the issue's keys with finite values, the fork and prefix-sharing
# figures are there; --csv and markdown print; bad options exit 2. No timing is asserted.
"$CQ" bench --serving --help >/dev/null 2>&1 || { echo "bench_smoke: --serving --help failed"; fail=1; }
"$CQ" bench --serving --seqs 2 --context 300 --head-dim 64 -t 1 --kv cq4,cq8 --reps 2 --bw-mib 32 \
    --json >"$tmp/sjson" 2>"$tmp/err" || { echo "bench_smoke: --serving --json failed"; cat "$tmp/err"; fail=1; }
[ "$(grep -c '"format": "cq[48]/cq[48]", "precision"' "$tmp/sjson")" = 3 ] ||
    { echo "bench_smoke: --serving: expected 3 rows (cq4 exact, cq4 fast, cq8)"; cat "$tmp/sjson"; fail=1; }
awk -F'[:,] *' '/"precision":/ {
    for (i = 1; i < NF; i++) v[$i] = $(i + 1)
    split("\"sequences\" \"context\" \"head_dim\" \"threads\" \"gbps\" \"read_bw_fraction\" \"speedup_vs_fp16\"", k, " ")
    for (j in k) { x = v[k[j]]; sub(/}.*/, "", x); if (x == "" || x !~ /^[0-9.eE+-]+$/ || !(x + 0 > 0)) { print k[j] " = " x; bad = 1 } }
} END { exit bad }' "$tmp/sjson" || { echo "bench_smoke: --serving row keys missing or not finite"; fail=1; }
grep -q '"fork": {"format": "cq4/cq4", "tokens": 16421, .*"ok": true}' "$tmp/sjson" &&
    grep -q '"prefix_sharing": \[{"format": "cq4/cq4", .*"accounting_ratio": [0-9.]*, "allocator_ratio": [0-9.]*, "ok": true}' "$tmp/sjson" ||
    { echo "bench_smoke: --serving fork / prefix-sharing figures missing"; fail=1; }
"$CQ" bench --serving --seqs 3 --context mixed --head-dim 32 -t 2 --kv fp16 --reps 1 --bw-mib 32 \
    --no-extras --csv >"$tmp/scsv" 2>"$tmp/err" || { echo "bench_smoke: --serving --csv failed"; cat "$tmp/err"; fail=1; }
[ "$(wc -l <"$tmp/scsv")" = 2 ] && head -1 "$tmp/scsv" | grep -q '^format,precision,sequences,context,' &&
    grep -q '^fp16/fp16,any,3,' "$tmp/scsv" || { echo "bench_smoke: --serving csv"; cat "$tmp/scsv"; fail=1; }
"$CQ" bench --serving --seqs 2 --context 200 --head-dim 32 -t 1 --kv cq4+ --precision fast --reps 1 \
    --bw-mib 32 --no-extras >"$tmp/smd" 2>"$tmp/err" && grep -q '^| 2 | 200 | 32 | 1 | cq4+/cq4 | fast |' "$tmp/smd" ||
    { echo "bench_smoke: --serving markdown"; cat "$tmp/smd" "$tmp/err"; fail=1; }
"$CQ" bench --serving --kv q9 >/dev/null 2>&1
[ $? = 2 ] || { echo "bench_smoke: --serving with a bad format must exit 2"; fail=1; }
"$CQ" bench --serving --context 0 >/dev/null 2>&1
[ $? = 2 ] || { echo "bench_smoke: --serving with context 0 must exit 2"; fail=1; }
# cq bench --prefill: every row verified (the bench exits 1 otherwise), its fields present and
# consistent (pairs from the causal count, best <= median, fp16 the 1.00x baseline); a zero
# tolerance must fail the reference check.
"$CQ" bench --prefill --help >"$tmp/phelp" 2>&1 && grep -q -- '--chunk N' "$tmp/phelp" ||
    { echo "bench_smoke: --prefill --help"; fail=1; }
"$CQ" bench --prefill --quick --json >"$tmp/pjson" 2>"$tmp/err" || { echo "bench_smoke: --prefill --quick --json failed"; cat "$tmp/err"; fail=1; }
awk '/"D":/ { n++
    if (!match($0, /"context": [0-9]+/)) { bad = 1; next } T = substr($0, RSTART + 11, RLENGTH - 11) + 0
    if (!match($0, /"pairs": [0-9]+/)) { bad = 1; next } p = substr($0, RSTART + 9, RLENGTH - 9) + 0
    if (p != T * (T + 1) / 2) bad = 1
    if (!match($0, /"median_ms": [0-9.]+/)) { bad = 1; next } m = substr($0, RSTART + 13, RLENGTH - 13) + 0
    if (!match($0, /"best_ms": [0-9.]+/)) { bad = 1; next } b = substr($0, RSTART + 11, RLENGTH - 11) + 0
    if (!(m > 0 && b > 0 && b <= m)) bad = 1
    if (!match($0, /"gflops": [0-9.]+/) || substr($0, RSTART + 10, RLENGTH - 10) + 0 <= 0) bad = 1
    if (!match($0, /"rel_err": [-0-9.e]+, "limit": [-0-9.e]+/)) bad = 1
    if (/"format": "fp16\/fp16", "precision": "any"/) { f++; if (!/"speedup_vs_fp16": 1.000/) bad = 1 }
    if (/"format": "cq4\/cq4", "precision": "(exact|fast)"/) c++
  } END { exit bad || n != 12 || f != 4 || c != 8 }' "$tmp/pjson" || { echo "bench_smoke: --prefill json rows wrong"; cat "$tmp/pjson"; fail=1; }
grep -q '"gflop_formula": "4 \* D \* pairs \* query_heads / median"' "$tmp/pjson" || { echo "bench_smoke: --prefill json header"; fail=1; }
"$CQ" bench --prefill --quick --chunk 50 --kv cq4+ --precision fast -t 2 --csv >"$tmp/pcsv" 2>"$tmp/err" ||
    { echo "bench_smoke: --prefill --chunk --csv failed"; cat "$tmp/err"; fail=1; }
[ "$(wc -l <"$tmp/pcsv")" = 3 ] && head -1 "$tmp/pcsv" | grep -q '^D,context,n_q,pos0,threads,format,precision,median_ms,best_ms,pairs,' &&
    grep -q '^64,200,50,150,2,cq4+/cq4,fast,[0-9.]*,[0-9.]*,8775,' "$tmp/pcsv" &&
    grep -q '^64,300,50,250,2,cq4+/cq4,fast,[0-9.]*,[0-9.]*,13775,' "$tmp/pcsv" || { echo "bench_smoke: --prefill --chunk csv"; cat "$tmp/pcsv"; fail=1; }
"$CQ" bench --prefill --quick -t 1 >"$tmp/pmd" 2>"$tmp/err" && grep -q '^| 64 | 300 | 300 | 0 | 1 | cq4/cq4 | exact |' "$tmp/pmd" ||
    { echo "bench_smoke: --prefill markdown"; cat "$tmp/pmd" "$tmp/err"; fail=1; }
"$CQ" bench --prefill --quick --kv fp16 -t 1 --tolerance 0 >/dev/null 2>"$tmp/err"
[ $? = 1 ] && grep -q 'CQ_ERR_MISMATCH' "$tmp/err" || { echo "bench_smoke: --prefill --tolerance 0 must fail verification"; fail=1; }
"$CQ" bench --prefill --contexts 100 --chunk 101 >/dev/null 2>&1
[ $? = 2 ] || { echo "bench_smoke: --prefill with a chunk over the context must exit 2"; fail=1; }
"$CQ" bench --prefill --precision exact,exact >/dev/null 2>&1
[ $? = 2 ] || { echo "bench_smoke: --prefill with a repeated precision must exit 2"; fail=1; }
exit $fail
