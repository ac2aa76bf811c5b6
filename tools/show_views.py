"""Write the add-one views grid: the same as the console script ``hac-views``
(hac_tf/cli/show_views.py), kept so existing commands work. See ``python tools/show_views.py --help``."""

from hac_tf.cli.show_views import run

if __name__ == "__main__":
    run()
