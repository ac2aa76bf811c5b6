"""Query a running TF Serving with image files (REST and/or gRPC) and print the outputs.

  hac-serving-client --images=a.png,b.png --model=quickstart --rest_url=http://localhost:8501
  hac-serving-client --images=a.png,b.png --model=quickstart --grpc_target=localhost:8500
  hac-serving-client --images=a.png --model=quickstart --rest_url=http://localhost:8501 \\
      --grpc_target=localhost:8500 --signature_name=feature_maps          # both APIs

Image files come from --images (comma-separated), repeated --image flags and positional
arguments. --rest_url and --grpc_target choose the APIs (both = query both); with neither, REST at
http://localhost:8501. The older flags still work: --model_name (= --model) and
--server/--rest_port/--grpc_port/--protocol=rest|grpc|both, which cannot be mixed with
--rest_url/--grpc_target. Requests and parsing: hac_tf/export/serving_client.py.

Exit codes: 0 answered; 1 a server error or an unreadable image; 2 bad flags.
"""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Sequence, Tuple

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested

LEGACY_ENDPOINT_FLAGS = ("server", "rest_port", "grpc_port", "protocol")


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-serving-client (same as tools/serving_client.py)."""
    fv = flag_values
    flags.DEFINE_list("images", [], "Image files, comma-separated (positional arguments and --image also work).",
                      flag_values=fv)
    flags.DEFINE_multi_string("image", [], "One image file (repeatable).", flag_values=fv)
    flags.DEFINE_string("model", None, "Model name, as in models.config (the export directory's name).",
                        flag_values=fv)
    flags.DEFINE_alias("model_name", "model", flag_values=fv)
    flags.DEFINE_string("rest_url", None, "TF Serving REST API, e.g. http://localhost:8501.", flag_values=fv)
    flags.DEFINE_string("grpc_target", None, "TF Serving gRPC API as host:port, e.g. localhost:8500.",
                        flag_values=fv)
    flags.DEFINE_string("signature_name", "serving_default", "serving_default | feature_maps.", flag_values=fv)
    flags.DEFINE_integer("version", None, "Model version; default: the server's latest.", flag_values=fv)
    flags.DEFINE_integer("image_size", 0, "Resize every image to this side before sending (0 = keep; images "
                         "of different sizes are resized to the first one's).", flag_values=fv)
    flags.DEFINE_float("timeout", 30.0, "Request timeout in seconds.", flag_values=fv)
    # the older way to name the server (kept working; not together with --rest_url/--grpc_target)
    flags.DEFINE_string("server", "localhost", "Older form: TF Serving host (with --rest_port/--grpc_port).",
                        flag_values=fv)
    flags.DEFINE_integer("rest_port", 8501, "Older form: REST port on --server.", flag_values=fv)
    flags.DEFINE_integer("grpc_port", 8500, "Older form: gRPC port on --server.", flag_values=fv)
    flags.DEFINE_enum("protocol", "rest", ["rest", "grpc", "both"], "Older form: which API(s) on --server.",
                      flag_values=fv)
    define_verbose_flag(fv)


def resolve_endpoints(rest_url: Optional[str], grpc_target: Optional[str], server: str, rest_port: int,
                      grpc_port: int, protocol: str, legacy_given: Sequence[str] = ()
                      ) -> Tuple[Optional[str], Optional[str]]:
    """``(rest_url or None, grpc_target or None)`` to query.

    --rest_url/--grpc_target win; without them the older --server/--*_port/--protocol flags (with
    their defaults: REST at localhost:8501) decide. ``legacy_given`` names the older flags that
    were set explicitly: mixing them with the new ones is a ValueError (which one would win is
    not obvious).
    """
    if rest_url or grpc_target:
        if legacy_given:
            raise ValueError(f"--{'/--'.join(legacy_given)} cannot be combined with --rest_url/--grpc_target; "
                             "name the server with --rest_url=http://host:8501 and/or --grpc_target=host:8500")
        return rest_url or None, grpc_target or None
    rest = f"http://{server}:{int(rest_port)}" if protocol in ("rest", "both") else None
    grpc = f"{server}:{int(grpc_port)}" if protocol in ("grpc", "both") else None
    return rest, grpc


def query(image_paths: Sequence[str], model: str, rest_url: Optional[str] = None,
          grpc_target: Optional[str] = None, signature_name: str = "serving_default",
          version: Optional[int] = None, image_size: Optional[int] = None, timeout: float = 30.0,
          out=None) -> Dict[str, Dict[str, "object"]]:
    """Loads the images, queries each given API, prints a summary to ``out`` (default stdout).

    Returns ``{"rest": {output: array}, "grpc": {...}}`` for the APIs queried.
    """
    from hac_tf.export import serving_client as client

    out = out or sys.stdout
    if not (rest_url or grpc_target):
        raise ValueError("give --rest_url and/or --grpc_target")
    if rest_url:
        client.normalize_rest_url(rest_url)  # bad URLs fail before any image is read
    if grpc_target:
        client.check_grpc_target(grpc_target)
    images = client.load_images(image_paths, image_size)
    print(f"{len(images)} image(s) {list(images.shape[1:])} -> model {model!r} signature {signature_name!r}",
          file=out)
    results: Dict[str, Dict[str, object]] = {}
    if rest_url:
        results["rest"] = client.predict_rest(rest_url, model, images, signature_name, version, timeout)
        print(f"REST {client.rest_predict_url(rest_url, model, version)}\n{client.summarize(results['rest'])}",
              file=out)
    if grpc_target:
        request = client.predict_request(model, images, signature_name, version)
        results["grpc"] = client.predict_grpc(grpc_target, request, timeout)
        print(f"gRPC {grpc_target}\n{client.summarize(results['grpc'])}", file=out)
    return results


def main(argv: List[str]) -> int:
    """Runs the query of the parsed flags; returns the exit code."""
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.export.serving_client import ServingError

    paths = list(f.images) + list(f.image) + list(argv[1:])
    if not f.model:
        print("error: --model is required (the model name in models.config, e.g. --model=quickstart)",
              file=sys.stderr)
        return 2
    if not paths:
        print("error: no image files (--images=a.png,b.png)", file=sys.stderr)
        return 2
    try:
        rest, grpc = resolve_endpoints(f.rest_url, f.grpc_target, f.server, f.rest_port, f.grpc_port, f.protocol,
                                       [n for n in LEGACY_ENDPOINT_FLAGS if f[n].present])
        from hac_tf.export.serving_client import check_grpc_target, normalize_rest_url

        rest = normalize_rest_url(rest) if rest else None
        grpc = check_grpc_target(grpc) if grpc else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        query(paths, f.model, rest, grpc, f.signature_name, f.version, f.image_size or None, f.timeout)
    except (ServingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Console script ``hac-serving-client``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
