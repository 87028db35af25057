"""Exports an already trained model.keras: `epsd-export` (epsd_tf/cli/export.py).

  python tools/export.py --model=runs/quickstart/model.keras --out=runs/quickstart/export

Needs the package installed (`make setup` installs it in editable mode).
"""

from epsd_tf.cli import export

if __name__ == "__main__":
    export.main()
