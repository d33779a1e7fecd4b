"""The numpy executor for plain-MLP ONNX graphs: parity with onnxruntime, fallback for anything else."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bridge import gantry
from policies.bundle import executor_matches, load_bundle, numpy_executor


@pytest.fixture(scope="module")
def gantry_dir(tmp_path_factory):
    return gantry.cached_gantry_bundle(tmp_path_factory.getbasetemp() / "bundles")


def ort_run(path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def observations(n, dim, seed=1):
    return (np.random.default_rng(seed).standard_normal((n, dim)) * 3.0).astype(np.float32)


def test_gantry_bundle_runs_on_numpy_and_matches_onnxruntime_on_1000_observations(gantry_dir):
    bundle = load_bundle(gantry_dir, backend="onnx", device="cpu")
    assert bundle.executor == "numpy"
    obs = observations(1000, bundle.obs_dim)
    reference = np.clip(ort_run(gantry_dir / "policy.onnx")(obs), -1.0, 1.0)
    kept = obs.copy()
    np.testing.assert_allclose(bundle.infer(obs), reference, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(obs, kept)  # the caller's observations are never written to
    for row in (0, 17, 999):  # one at a time, as the server's inline path mostly runs
        np.testing.assert_allclose(bundle.infer(obs[row]), reference[row], rtol=0, atol=1e-6)


def executor_matching_onnxruntime(path, rows):
    """The numpy executor for the graph at path, checked against onnxruntime on `rows` observations."""
    run = numpy_executor(path)
    assert run is not None
    obs = observations(rows, 5)
    np.testing.assert_allclose(run(obs), ort_run(path)(obs), rtol=0, atol=1e-5)
    return run


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
    run = executor_matching_onnxruntime(path, rows=1000)
    assert executor_matches(run, ort_run(path), 5)


def test_a_graph_that_is_not_one_chain_still_matches_onnxruntime(tmp_path):
    nodes = [  # "unused" reads the observation, not the node before it: run through a value table
        helper.make_node("Gemm", ["obs", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Neg", ["obs"], ["unused"]),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("MatMul", ["t", "w2"], ["action"]),
    ]
    executor_matching_onnxruntime(_mlp_graph(tmp_path / "branch.onnx", nodes), rows=200)


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


def test_an_executor_that_disagrees_is_not_used(gantry_dir):
    reference = ort_run(gantry_dir / "policy.onnx")
    assert executor_matches(numpy_executor(gantry_dir / "policy.onnx"), reference, 6)
    assert not executor_matches(lambda x: reference(x) + 1e-3, reference, 6)
    assert not executor_matches(lambda x: reference(x)[:, :2], reference, 6)
