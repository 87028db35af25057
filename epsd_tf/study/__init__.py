"""epsd_tf.study: the full-length reproduction study of issue 13 (EPSD, Chen et al., AAAI 2024).

* `plan` — the phases of the study as sweeps over families (one sweep root per
  configuration), cell keys `<family>/<cell>`, what is committed and what is next.
* `archive` — the committed form of a finished cell (its small result files),
  `pack` (GPU machine -> one tarball), `collect` (-> docs/results/study/, with
  the configuration checks), `restore` (committed cells -> a fresh sweep root).
* `carry` — unfinished cells, whole, from one device call to the next
  (`pack_unfinished`, `restore_unfinished`).
* `device` — one device call: restore, the plan's sweeps until a deadline, pack.
* `repeats` — second runs of committed cells, paired with them (run-to-run noise).
* `rows` — the committed cells as rows (network, allocation, landscape re-run,
  cost) read from each cell's own files.
* `compare` — EPSD against each baseline, paired over matched seeds
  (`analysis.stats`: mean difference, 95 % t interval, sign test).
* `claims` — the paper's claims with the comparisons that test each.
* `report` — docs/RESULTS.md and its figures from the committed cells.

Like `sweep/`, this package sits above the library (it imports `sweep` and
`analysis`); nothing in the library imports it.
"""
