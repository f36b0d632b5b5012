"""A one-line reason keeps the cause TensorFlow or an engine gave, not the head of its traceback;
the whole text stays in `detail`. Every error text here is one TensorFlow or the engine really
raised, in this process."""

import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from blocks import engines
from blocks.causes import cause, shorten
from blocks.measure import server, steps
from blocks.measure.workload import Config, Workload

WORKLOAD = Workload("train", batch_size=4, image_size=16)
TRACEBACK_WORDS = ("most recent call", "Detected at node", 'File "', "[[", "Op:__inference")


def _raised(fn, *args):
    with pytest.raises(Exception) as caught:
        fn(*args)
    return caught.value


def _graph_execution_error():
    """A run-time error inside a tf.function: TF wraps it in "Graph execution error: Detected at
    node Reshape defined at (most recent call last): File ...", the cause after the frames."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def reshape(x):
        return tf.reshape(x, [3, -1])

    return _raised(reshape, tf.ones([4]))


def _missing_kernel_error():
    """No CPU kernel for Cholesky in float16: the cause, then the kernels TF does have."""

    @tf.function
    def cholesky(x):
        return tf.raw_ops.Cholesky(input=x)

    return _raised(cholesky, tf.eye(2, dtype=tf.float16))


def _trace_time_error():
    """A shape error found while tracing: "in user code: File ... <source line> ValueError: ..." """

    @tf.function
    def reshape(x):
        return tf.reshape(x, [3, -1])

    return _raised(reshape, tf.ones([4]))


def _assert_one_clean_line(text):
    assert "\n" not in text
    for words in TRACEBACK_WORDS:
        assert words not in text, text


def test_cause_of_a_graph_execution_error_is_the_line_after_its_frames():
    e = _graph_execution_error()
    assert "Detected at node" in e.message  # the traceback this is about is really there
    text = cause(e)
    assert "Input to reshape is a tensor with 4 values" in text
    assert "requested shape requires a multiple of 3" in text
    _assert_one_clean_line(text)


def test_cause_of_a_trace_time_error_is_its_exception_line():
    text = cause(_trace_time_error())
    assert text.startswith("ValueError: Dimension size must be evenly divisible by 3")
    _assert_one_clean_line(text)


def test_missing_kernel_reason_names_the_op_and_keeps_the_rest_in_detail():
    e = _missing_kernel_error()
    config = Config("subclassed", "graph", "default")
    reason = steps._unsupported(e, WORKLOAD, config)
    message = str(reason)
    assert message.startswith(f"{config.label}: TF ")
    assert "No OpKernel was registered to support Op 'Cholesky'" in message
    assert message.endswith("[T=DT_HALF]")  # the end too: which dtype has no kernel
    _assert_one_clean_line(message)
    assert "Registered kernels:" in reason.detail and "\n" in reason.detail


def test_a_workers_failure_line_is_the_cause_not_graph_execution_error():
    reply = server.Server.failure(_graph_execution_error())
    assert reply["error"].startswith("InvalidArgumentError: Input to reshape is a tensor")
    _assert_one_clean_line(reply["error"])
    assert "Detected at node" in reply["detail"]


def test_a_projects_one_line_message_passes_through_a_worker_whole():
    e = ValueError("Invalid images. Expected a batch; Received: images=[[1, 2]]")
    assert server.Server.failure(e)["error"] == str(e)


@pytest.mark.parametrize(
    "content, words",
    [
        ("<net>not a model", "Unable to read the model"),
        (None, 'ir: Could not open the file: "'),  # after "FrontEnd API failed with ...:"
    ],
    ids=["not-a-model", "missing"],
)
def test_engine_load_failure_names_openvinos_cause(tmp_path, content, words):
    pytest.importorskip("openvino")
    path = tmp_path / "model.xml"
    if content is not None:
        path.write_text(content)
    e = _raised(engines.load, "openvino", str(path))
    assert isinstance(e, engines.EngineError)
    assert "Exception from src/" in e.detail  # OpenVINO's text starts with where it raised
    assert str(e).startswith(f"OpenVINO could not load it: {words}")
    assert "Exception from src/" not in str(e) and "\n" not in str(e)


def test_shorten_keeps_both_ends_of_a_long_reason():
    text = "subclassed · xla: " + "word " * 60 + "the offending value NCHW"
    short = shorten(text, 120)
    assert len(short) <= 120 and " ... " in short
    assert short.startswith("subclassed · xla: word") and short.endswith("value NCHW")
    assert shorten("fits as it is", 120) == "fits as it is"


@given(st.text(), st.integers(20, 400))
def test_shorten_is_one_line_within_its_limit(text, limit):
    short = shorten(text, limit)
    assert len(short) <= limit and "\n" not in short and "\r" not in short
