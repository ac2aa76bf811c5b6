"""hac_tf.io_errors: one-line reasons and recovered errno for OSError and TF file errors."""

import errno

import tensorflow as tf

from hac_tf.io_errors import describe, is_io_error


def test_oserror_keeps_its_errno():
    e = OSError(errno.ENOSPC, "No space left on device")
    assert is_io_error(e) and describe(e)[0] == errno.ENOSPC


def test_tf_error_errno_recovered_from_text_and_long_message_keeps_the_end():
    path = "/very/long/" + "x" * 2000
    e = tf.errors.ResourceExhaustedError(None, None, f"{path}_temp/part-0; No space left on device\n(more)")
    code, text = describe(e)
    assert code == errno.ENOSPC and is_io_error(e)
    assert text.endswith("No space left on device (more)") and len(text) < 500 and "\n" not in text


def test_unknown_tf_error_is_eio_and_invalid_argument_is_not_io():
    assert describe(tf.errors.UnknownError(None, None, "weird"))[0] == errno.EIO
    assert not is_io_error(tf.errors.InvalidArgumentError(None, None, "bad shape"))
    assert not is_io_error(ValueError("x"))
