#!/bin/bash
mkdir -p $OUT; date > $OUT/inp.log
for w in 2 1 4 8; do
  s=$(date +%s)
  timeout -s INT 62 python3 tools/bench.py --suite=gpu --only=input_path --input_workers=$w --output=$OUT/input_w$w.json > $OUT/inp_w$w.log 2>&1
  echo "workers=$w rc=$? wall=$(( $(date +%s) - s ))s" >> $OUT/inp.log
done
