"""Fault drill: the same as the console script ``hac-fault-drill`` (hac_tf/cli/fault_drill.py),
kept so existing commands work. See ``python tools/fault_drill.py --help``."""

from hac_tf.cli.fault_drill import run

if __name__ == "__main__":
    run()
