#!/bin/bash
# Issue 11: the GPU bench re-measured after the paired DLB forward and the mask change;
# issue 15: sweep throughput (--parallel 8, 1, 4; one-epoch study cells, no Mean-JSV).
mkdir -p $OUT; date > $OUT/final.log
s=$(date +%s)
timeout -s INT ${TB:-180} python3 tools/bench.py --suite=gpu --only=sd_vs_fit,scoring,input_path --methods=none,dlb --output=$OUT/bench_gpu.json > $OUT/bench.log 2>&1
echo "bench rc=$? wall=$(( $(date +%s) - s ))s" >> $OUT/final.log
for n in 8 1 4; do
  s=$(date +%s)
  timeout -s INT ${TS:-190} python3 tools/benchmarks/sweep_throughput.py --parallel=$n --cells_per_slot=1 \
     --gin_bindings="run.mean_jsv_examples = 0" --output=$OUT/sweep_throughput_p$n.json >> $OUT/throughput.log 2>&1
  echo "parallel=$n rc=$? wall=$(( $(date +%s) - s ))s" >> $OUT/final.log
done
date >> $OUT/final.log
