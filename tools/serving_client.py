"""Query a running TF Serving with image files: the same as the console script
``hac-serving-client`` (hac_tf/cli/serving_client.py), kept so existing commands work.

  python tools/serving_client.py --images=a.png,b.png --model=quickstart --rest_url=http://localhost:8501
  python tools/serving_client.py --images=a.png,b.png --model=quickstart --grpc_target=localhost:8500

See ``python tools/serving_client.py --help``; requests and parsing: hac_tf/export/serving_client.py.
"""

from hac_tf.cli.serving_client import run

if __name__ == "__main__":
    run()
