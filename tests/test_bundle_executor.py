"""The native (C) and numpy executors for plain-MLP ONNX graphs: parity with onnxruntime, fallbacks."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from policies import graph_executors
from policies.bundle import BundleError, load_bundle
from policies.graph_executors import (
    executor_matches,
    fastest_matching_executor,
    native_run,
    numpy_executor,
    numpy_run,
    read_plain_graph,
    with_output_bounds,
)


def ort_run(path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def observations(n, dim, seed=1):
    return (np.random.default_rng(seed).standard_normal((n, dim)) * 3.0).astype(np.float32)


def test_the_kernel_is_compiled():
    assert graph_executors._mlp_kernel is not None, "policies._mlp_kernel is not built: run scripts/setup.sh (needs a C compiler)"


def test_onnxruntime_by_default_the_kernel_when_asked(bundle_dir):
    assert load_bundle(bundle_dir, backend="onnx", device="cpu").executor == "onnxruntime"
    with pytest.raises(BundleError, match="unknown executor 'fast'"):
        load_bundle(bundle_dir, executor="fast")


def test_gantry_bundle_runs_on_the_kernel_and_matches_onnxruntime_on_1000_observations(bundle_dir):
    bundle = load_bundle(bundle_dir, backend="onnx", device="cpu", executor="kernel")
    assert bundle.executor == "native"
    obs = observations(1000, bundle.obs_dim)
    reference = np.clip(ort_run(bundle_dir / "policy.onnx")(obs), -1.0, 1.0)
    kept = obs.copy()
    np.testing.assert_allclose(bundle.act(obs), reference, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(obs, kept)  # the caller's observations are never written to
    for row in (0, 17, 999):  # one at a time, as the server's inline path mostly runs
        np.testing.assert_allclose(bundle.act(obs[row]), reference[row], rtol=0, atol=1e-6)
    numpy = numpy_executor(bundle_dir / "policy.onnx")  # the fallback computes the same
    np.testing.assert_allclose(np.clip(numpy(obs), -1.0, 1.0), reference, rtol=0, atol=1e-6)


def executors_matching_onnxruntime(path, rows):
    """Both executors for the graph at path (None where one does not apply), checked against onnxruntime."""
    graph = read_plain_graph(path)
    assert graph is not None
    obs, want = observations(rows, 5), ort_run(path)(observations(rows, 5))
    runs = {"native": native_run(graph), "numpy": numpy_run(graph)}
    for name, run in runs.items():
        if run is not None:
            np.testing.assert_allclose(run(obs), want, rtol=0, atol=1e-5, err_msg=name)
    return runs


def _mlp_graph(path, nodes, extra_inits=()):
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "w1"),  # Gemm, transB
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "w2"),  # MatMul
        numpy_helper.from_array(np.full(5, 0.5, np.float32), "mean"),
        numpy_helper.from_array(np.full(5, 2.0, np.float32), "std"),
        numpy_helper.from_array(np.float32(-0.75), "lo"),
        numpy_helper.from_array(np.float32(0.75), "hi"),
        *extra_inits,
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 5])],
                              [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_every_supported_op_matches_onnxruntime(tmp_path):
    nodes = [
        helper.make_node("Cast", ["obs"], ["c"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["c", "mean"], ["s"]),
        helper.make_node("Div", ["s", "std"], ["d"]),
        helper.make_node("Clip", ["d", "lo", "hi"], ["k"]),
        helper.make_node("Flatten", ["k"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Neg", ["r"], ["n"]),
        helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.float32(2.0))),
        helper.make_node("Mul", ["two", "n"], ["m"]),
        helper.make_node("MatMul", ["m", "w2"], ["y"]),
        helper.make_node("Tanh", ["y"], ["t"]),
        helper.make_node("Max", ["t", "lo"], ["u"]),
        helper.make_node("Min", ["u", "hi"], ["v"]),
        helper.make_node("Add", ["v", "lo"], ["action"]),
    ]
    path = _mlp_graph(tmp_path / "mlp.onnx", nodes)
    runs = executors_matching_onnxruntime(path, rows=1000)
    assert runs["native"] is not None and runs["numpy"] is not None
    assert fastest_matching_executor(path, ort_run(path), 5).executor == "native"


def test_the_kernel_propagates_nan_like_numpy_and_refuses_bad_arrays(tmp_path):
    nodes = [
        helper.make_node("Gemm", ["obs", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
        helper.make_node("Max", ["y", "lo"], ["u"]),
        helper.make_node("Min", ["u", "hi"], ["action"]),
    ]
    graph = read_plain_graph(_mlp_graph(tmp_path / "nan.onnx", nodes))
    native, numpy = native_run(graph), numpy_run(graph)
    obs = observations(graph_executors.NATIVE_MAX_ROWS, 5)  # rows the kernel computes (larger batches: numpy)
    obs[1, 2] = np.nan
    np.testing.assert_array_equal(np.isnan(native(obs)), np.isnan(numpy(obs)))
    assert np.isnan(native(obs)[1]).all() and not np.isnan(np.delete(native(obs), 1, axis=0)).any()
    with pytest.raises(ValueError, match=r"float32 of shape \(rows, 5\)"):
        native(obs.astype(np.float64))
    with pytest.raises(ValueError, match=r"float32 of shape \(rows, 5\)"):
        native(obs[:, :4].copy())


def test_the_kernel_refuses_malformed_programs_with_a_reason():
    kernel = graph_executors._mlp_kernel
    with pytest.raises(ValueError, match="op 0: unknown op code 99"):
        kernel.Program([(99, None, None, 3)], 3)
    with pytest.raises(ValueError, match="op 1: weights has 8 bytes, expected 6 float32 values"):
        kernel.Program([(kernel.OP_TANH, None, None, 3), (kernel.OP_DENSE, b"\0" * 8, None, 2)], 3)
    with pytest.raises(ValueError, match="op 0: an elementwise op keeps the width 3"):
        kernel.Program([(kernel.OP_ADD, b"\0" * 16, None, 4)], 3)
    program = kernel.Program([(kernel.OP_NEG, None, None, 3)], 3)
    with pytest.raises(TypeError, match="initialised once"):
        program.__init__([], 3)
    out = np.empty((1, 3), np.float32)
    program.run(np.array([[1.0, -2.0, 0.5]], np.float32), out)
    np.testing.assert_array_equal(out, [[-1.0, 2.0, -0.5]])


def test_the_kernel_tanh_is_within_3_ulp_of_float64_tanh():
    kernel = graph_executors._mlp_kernel
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.25, -0.25, 9.0, -9.0, 0.0, np.inf, -np.inf, np.nan]])
    x = x.astype(np.float32).reshape(-1, 1)
    out = np.empty_like(x)
    kernel.Program([(kernel.OP_TANH, None, None, 1)], 1).run(x, out)
    want = np.tanh(x.astype(np.float64))
    finite = np.isfinite(x)
    ulps = np.abs(out[finite] - want[finite]) / np.spacing(np.abs(want[finite]).astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 3.0 and np.abs(out[finite] - want[finite]).max() < 2e-7
    assert out[-3, 0] == 1.0 and out[-2, 0] == -1.0 and np.isnan(out[-1, 0])


def test_output_bounds_in_the_kernel_clamp_exactly_as_numpy(bundle_dir):
    graph = read_plain_graph(bundle_dir / "policy.onnx")
    native = native_run(graph)
    low, high = np.array([-0.3, 0.0, -np.inf], np.float32), np.array([0.3, 0.0, 0.1], np.float32)
    bounded = with_output_bounds(native, low, high)
    assert bounded.executor == "native"
    obs = observations(3 * graph_executors.NATIVE_MAX_ROWS, 6)
    obs[1, 0] = np.nan
    for rows in (obs[:1], obs[: graph_executors.NATIVE_MAX_ROWS], obs):  # kernel and numpy batches
        want = np.minimum(np.maximum(native(rows), low), high)
        np.testing.assert_array_equal(bounded(rows), want)  # NaN where numpy has NaN, -0.0 where it has -0.0
        np.testing.assert_array_equal(np.signbit(bounded(rows)), np.signbit(want))
    assert (bounded(obs[:1])[0, :2] != native(obs[:1])[0, :2]).any()  # the bounds did bite


def test_a_graph_that_is_not_one_chain_still_matches_onnxruntime(tmp_path):
    nodes = [  # "unused" reads the observation, not the node before it: run through a value table
        helper.make_node("Gemm", ["obs", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Neg", ["obs"], ["unused"]),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("MatMul", ["t", "w2"], ["action"]),
    ]
    path = _mlp_graph(tmp_path / "branch.onnx", nodes)
    runs = executors_matching_onnxruntime(path, rows=200)
    assert runs["native"] is None and runs["numpy"] is not None  # the kernel runs chains only
    assert fastest_matching_executor(path, ort_run(path), 5).executor == "numpy"


def test_graphs_with_other_ops_stay_on_onnxruntime(tmp_path):
    nodes = [
        helper.make_node("Gemm", ["obs", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Softmax", ["h"], ["p"]),  # not an op the executor knows
        helper.make_node("MatMul", ["p", "w2"], ["action"]),
    ]
    assert numpy_executor(_mlp_graph(tmp_path / "softmax.onnx", nodes)) is None
    two_inputs = [  # a node reading two runtime values (h + h): not a plain chain
        helper.make_node("Gemm", ["obs", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Add", ["h", "h"], ["hh"]),
        helper.make_node("MatMul", ["hh", "w2"], ["action"]),
    ]
    assert numpy_executor(_mlp_graph(tmp_path / "add.onnx", two_inputs)) is None


def test_an_executor_that_disagrees_is_not_used(bundle_dir):
    reference = ort_run(bundle_dir / "policy.onnx")
    assert executor_matches(numpy_executor(bundle_dir / "policy.onnx"), reference, 6)
    assert not executor_matches(lambda x: reference(x) + 1e-3, reference, 6)
    assert not executor_matches(lambda x: reference(x)[:, :2], reference, 6)
