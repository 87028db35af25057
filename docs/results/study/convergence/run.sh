#!/bin/bash
# Convergence check (issue 13) + GPU sharing probe: 5 cells at once on one H200.
mkdir -p $OUT; nvidia-smi -L > $OUT/conv.log
export XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_PYTHON_CLIENT_MEM_FRACTION=0.18
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache
B=(--gin_bindings="load.max_train_examples = None" --gin_bindings="run.verbose = 2" --gin_bindings="run.mean_jsv_examples = 0")
start=$(date +%s)
launch() { name=$1; shift; ( s=$(date +%s); timeout -s INT ${T:-520} python3 tools/run.py "$@" "${B[@]}" --workdir=/tmp/c/$name > $OUT/$name.log 2>&1; echo "$name rc=$? wall=$(( $(date +%s) - s ))s" >> $OUT/conv.log ) & }
launch ce15 --gin_file=gin/quickstart_dense.gin --gin_bindings="run.epochs = 15"
launch ce30 --gin_file=gin/quickstart_dense.gin --gin_bindings="run.epochs = 30"
launch ce60 --gin_file=gin/quickstart_dense.gin --gin_bindings="run.epochs = 60"
launch dlb30 --gin_file=gin/quickstart.gin --gin_bindings="run.prune = None" --gin_bindings="run.epochs = 30"
launch epsd90 --gin_file=gin/quickstart.gin --gin_bindings="run.epochs = 30" --gin_bindings="prune_at_init.score_dtype = 'float64'"
sleep 20; nvidia-smi >> $OUT/conv.log
wait
echo "all wall=$(( $(date +%s) - start ))s" >> $OUT/conv.log
cd /tmp/c && tar czf $OUT/conv.tgz */metrics.json */train_log.csv */stages.json */pruning_report.json 2>/dev/null; ls -la /tmp/c/* >> $OUT/conv.log
