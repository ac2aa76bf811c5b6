"""HAC_FAULT_AT: a real signal the n-th time a phase is reached, nothing when unset, clear errors."""

import os
import signal
import subprocess
import sys

import pytest

from hac_tf.fault_hooks import FaultSpec, parse_fault_specs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# reaches "step" 5 times and "export" once, printing each arrival before the fault point
PROBE = ("from hac_tf.fault_hooks import fault_point\n"
         "for i in range(1, 6):\n"
         "    print('step', i, flush=True)\n"
         "    fault_point('step')\n"
         "print('export', flush=True)\n"
         "fault_point('export')\n"
         "print('done', flush=True)\n")


def _probe(spec):
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("HAC_FAULT_AT", None)
    if spec is not None:
        env["HAC_FAULT_AT"] = spec
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)


def test_parse_round_trip():
    specs = parse_fault_specs("step:7, checkpoint:2 ,export:1:TERM")
    assert specs == (FaultSpec("step", 7), FaultSpec("checkpoint", 2), FaultSpec("export", 1, signal.SIGTERM))
    assert ",".join(s.render() for s in specs) == "step:7,checkpoint:2,export:1:TERM"
    assert parse_fault_specs("") == ()


@pytest.mark.parametrize("text, culprit", [("stepp:3", "'stepp:3'"), ("step", "'step'"), ("step:0", "count"),
                                           ("step:x", "count"), ("step:2:HUP", "signal"),
                                           ("step:1:TERM:9", "'step:1:TERM:9'")])
def test_bad_specs_name_the_item(text, culprit):
    with pytest.raises(ValueError, match="HAC_FAULT_AT") as e:
        parse_fault_specs(text)
    assert culprit in str(e.value)


def test_kill_at_the_nth_arrival():
    r = _probe("step:3")
    assert r.returncode == -signal.SIGKILL
    assert r.stdout.split() == ["step", "1", "step", "2", "step", "3"]


def test_term_and_other_phase():
    r = _probe("export:1:TERM")
    assert r.returncode == -signal.SIGTERM
    assert r.stdout.splitlines()[-1] == "export"


def test_inert_when_unset_or_never_reached():
    assert _probe(None).stdout.splitlines()[-1] == "done"
    r = _probe("step:6,checkpoint:1")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "done"
