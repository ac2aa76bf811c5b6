"""Where the training step's time goes: the same as the console script ``hac-profile-train``
(hac_tf/cli/profile_train.py; the profile: hac_tf/benchmarks/op_profile.py).
See ``python tools/profile_train.py --help``."""

from hac_tf.cli.profile_train import run

if __name__ == "__main__":
    run()
