"""The full-length reproduction study (issue 13): plan, restore, pack, collect, report.

  python tools/study.py plan          # the next phase's commands, given what is committed
  python tools/study.py report        # docs/RESULTS.md + figures from docs/results/study/

See epsd_tf/cli/study.py for every action. Needs the package installed (`make setup`).
"""

from epsd_tf.cli import study

if __name__ == "__main__":
    study.main()
