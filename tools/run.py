"""Runs one EPSD experiment from gin files: `epsd-run` (epsd_tf/cli/run.py).

  python tools/run.py --gin_file=gin/quickstart.gin --workdir=runs/quickstart

Needs the package installed (`make setup` installs it in editable mode).
"""

from epsd_tf.cli import run

if __name__ == "__main__":
    run.main()
