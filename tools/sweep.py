"""Runs a grid of EPSD experiments: `epsd-sweep` (epsd_tf/cli/sweep.py).

  python tools/sweep.py --base_gin=gin/quickstart.gin --scorers=epsd,snip,random,dense \
      --methods=dlb --sparsities=0.9,0.95 --seeds=0,1 --root=runs/study

Needs the package installed (`make setup` installs it in editable mode).
"""

from epsd_tf.cli import sweep

if __name__ == "__main__":
    sweep.main()
