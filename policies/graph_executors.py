"""Run a bundle's ONNX graph without onnxruntime when it is a plain MLP: in C, or as numpy calls.

A policy bundle's graph is usually a small MLP (Gemm/MatMul, Add, Tanh/Relu, Min/Max clamps). At batch
1, onnxruntime spends most of a call on its own per-run machinery. Two executors compute the same
graph with far less code per call (which also means fewer cache misses on a busy controller host):

- native: the compiled kernel in policies/_mlp_kernel.c (about 1.6 us for a 64x64 policy at batch 1),
  for graphs that are one chain of nodes, each reading the one before it, as every exported MLP is;
  batches of more than NATIVE_MAX_ROWS rows go to numpy's BLAS, faster there;
- numpy: one numpy call per node (about 8 us at batch 1), for any graph of the ops below whose every node has
  exactly one runtime input (the rest constants).

``fastest_matching_executor`` tries them in that order and keeps the first whose outputs agree with
onnxruntime's on EXECUTOR_CHECK_ROWS observations; load_bundle falls back to onnxruntime otherwise. The
kernel is built by ``pip install`` (setup.py) when a C compiler is there; without it, numpy runs.
Reading the graph needs the ``onnx`` package (onnxruntime does not expose the weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

try:
    from policies import _mlp_kernel
except ImportError:  # not compiled (no C compiler at install time): numpy executor only
    _mlp_kernel = None

EXECUTOR_CHECK_ROWS = 1000
EXECUTOR_ATOL = 1e-5  # float32 matrix products in another summation order differ in the last bits

Executor = Callable[[np.ndarray], np.ndarray]  # float32 C-contiguous (B, obs_dim) -> (B, act_dim)

_UNARY = {"Tanh": np.tanh, "Neg": np.negative, "Relu": lambda x, out=None: np.maximum(x, np.float32(0), out=out)}
_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Min": np.minimum, "Max": np.maximum}
_ALIAS = ("Identity", "Flatten", "Cast")  # no arithmetic: the value itself (checked per node below)


class PlainNode(NamedTuple):
    op: str
    attrs: dict[str, Any]
    ins: list[str]
    src: str  # the one runtime input; the others are constants
    dst: str
    inplace: bool  # src was made by an earlier node and only this node reads it: it may be overwritten


class PlainGraph(NamedTuple):
    nodes: list[PlainNode]
    consts: dict[str, np.ndarray]
    input: str
    output: str
    input_dims: list[int | None]  # None where the graph names a dimension instead (the batch)

    def chain(self) -> list[PlainNode] | None:
        """The computing nodes, when each reads the one before it; None for any other shape of graph.

        Executors take float32 (B, obs_dim), so Identity, Cast (always to float32 here) and the
        Flatten of a rank-2 input do nothing and are left out.
        """
        nodes = self.nodes
        if not nodes or nodes[-1].dst != self.output:
            return None
        if any(node.src != (nodes[i - 1].dst if i else self.input) for i, node in enumerate(nodes)):
            return None
        rank2 = len(self.input_dims) == 2
        return [n for n in nodes if not (n.op in ("Identity", "Cast") or n.op == "Flatten" and rank2)]


def read_plain_graph(file: Path) -> PlainGraph | None:
    """The graph in `file` if each node has one runtime input and one output; None otherwise or without onnx."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return None
    try:
        graph = onnx.load(str(file)).graph
    except Exception:  # onnx's own decode errors; onnxruntime already accepted the file
        return None
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        return None
    in_name, out_name = inputs[0].name, graph.output[0].name
    runtime = {in_name}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    owned: set[str] = set()  # runtime values an executor creates (never the caller's array)
    nodes = []
    for node in graph.node:
        op, attrs = node.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "Constant" and "value" in attrs and len(node.output) == 1:
            consts[node.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        ins = [n for n in node.input if n]
        live = [n for n in ins if n in runtime]
        if len(live) != 1 or len(node.output) != 1 or any(n not in runtime and n not in consts for n in ins):
            if not live and all(n in consts for n in ins) and op == "Identity":
                consts[node.output[0]] = consts[ins[0]]  # a constant passed on (exporters dedupe weights so)
                continue
            return None
        src, dst = live[0], node.output[0]
        inplace = src in owned and readers.get(src, 0) == 1 and src != out_name
        nodes.append(PlainNode(op, attrs, ins, src, dst, inplace))
        runtime.add(dst)
        if op not in _ALIAS or inplace:
            owned.add(dst)
    if out_name not in runtime:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    return PlainGraph(nodes, consts, in_name, out_name, dims)


def fastest_matching_executor(file: Path, reference: Executor, obs_dim: int) -> Executor | None:
    """The native, else the numpy executor for the graph in `file`, if it agrees with `reference`; else None."""
    graph = read_plain_graph(file)
    if graph is None:
        return None
    for make in (native_run, numpy_run):
        run = make(graph)
        if run is not None and executor_matches(run, reference, obs_dim):
            return run
    return None


def executor_matches(run, reference, obs_dim: int, rows: int = EXECUTOR_CHECK_ROWS, atol: float = EXECUTOR_ATOL) -> bool:
    """True when `run` and `reference` agree within atol on `rows` seeded observations, as one batch and row by row.

    Both, because an executor may compute small and large batches differently (the native one does).
    """
    rng = np.random.default_rng(0)
    obs = np.concatenate([np.zeros((1, obs_dim)), rng.standard_normal((rows - 1, obs_dim)) * 2.0]).astype(np.float32)
    try:
        want = np.asarray(reference(obs))
        got = np.asarray(run(obs.copy()))
        singles = [np.asarray(run(obs[i : i + 1].copy())) for i in range(rows)]
    except Exception:  # noqa: BLE001 - any failure means: use the reference runtime
        return False
    if got.shape != want.shape or any(single.shape != (1, *want.shape[1:]) for single in singles):
        return False
    return (bool(np.isfinite(got).all()) and bool(np.all(np.abs(got - want) <= atol))
            and bool(np.all(np.abs(np.concatenate(singles) - want) <= atol)))


# ----------------------------------------------------------------------------------- numpy


def numpy_executor(file: Path) -> Executor | None:
    """The numpy executor for the graph in `file`, or None when the graph is not a plain MLP."""
    graph = read_plain_graph(file)
    return None if graph is None else numpy_run(graph)


def numpy_run(graph: PlainGraph) -> Executor | None:
    steps = [(_numpy_step(n.op, n.attrs, n.ins, n.src, graph.consts, n.inplace), n.src, n.dst) for n in graph.nodes]
    if any(step is None for step, _, _ in steps):
        return None
    chain = graph.chain()
    if chain is not None:  # no table of values: each step's result feeds the next
        kept = {id(node) for node in chain}
        fns = [step for (step, _, _), node in zip(steps, graph.nodes) if id(node) in kept]

        def run(x: np.ndarray) -> np.ndarray:
            for fn in fns:
                x = fn(x)
            return x
    else:
        in_name, out_name = graph.input, graph.output

        def run(x: np.ndarray) -> np.ndarray:
            values = {in_name: x}
            for step, src, dst in steps:
                values[dst] = step(values[src])
            return values[out_name]

    run.executor = "numpy"
    return run


def _numpy_step(op: str, attrs: dict, ins: list[str], src: str, consts: dict, inplace: bool):
    """One node as a function of its runtime input, or None if unsupported."""
    f32 = np.float32
    const = {n: np.ascontiguousarray(consts[n]) for n in ins if n != src}
    if any(c.dtype != f32 for c in const.values()):
        return None
    if op == "Identity":
        return lambda x: x
    if op == "Cast":
        return (lambda x: x if x.dtype == f32 else x.astype(f32)) if attrs.get("to") == 1 else None
    if op == "Flatten":
        return (lambda x: x.reshape(x.shape[0], -1)) if attrs.get("axis", 1) == 1 else None
    if op in ("Gemm", "MatMul"):
        weight, bias = _dense_constants(op, attrs, ins, src, const)
        if weight is None:
            return None
        if bias is None:
            return lambda x: x @ weight

        def gemm(x):
            y = x @ weight
            y += bias
            return y

        return gemm
    out = (lambda x: x) if inplace else (lambda x: None)
    if op in _UNARY and len(ins) == 1:
        fn = _UNARY[op]
        return lambda x: fn(x, out=out(x))
    if op in _BINARY and len(ins) == 2:
        fn, other = _BINARY[op], const[ins[1] if ins[0] == src else ins[0]]
        if ins[0] == src:
            return lambda x: fn(x, other, out=out(x))
        return lambda x: fn(other, x, out=out(x))
    if op == "Clip" and ins[0] == src:
        low, high = (const.get(ins[i]) if len(ins) > i else None for i in (1, 2))

        def clip(x):
            y = x if low is None else np.maximum(x, low, out=out(x))
            return y if high is None else np.minimum(y, high, out=y if y is not x else out(x))

        return clip
    return None


def _dense_constants(op: str, attrs: dict, ins: list[str], src: str, const: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(weight as in x @ weight, bias or None) of a Gemm/MatMul node; (None, None) if unsupported."""
    if ins[0] != src or ins[1] == src:
        return None, None
    if op == "Gemm" and (attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0)):
        return None, None
    weight = const[ins[1]]
    if weight.ndim != 2:
        return None, None
    if op == "Gemm" and attrs.get("transB", 0):
        weight = np.ascontiguousarray(weight.T)
    return weight, (const.get(ins[2]) if op == "Gemm" and len(ins) > 2 else None)


# ----------------------------------------------------------------------------------- native

# Batches above this many rows go to the numpy executor (64x64 policy: kernel 1.6 / 4.5 / 8.3 / 16 us
# at 1 / 4 / 8 / 16 rows, numpy 8.3 / 9.1 / 10.4 / 12.4 us: BLAS wins once rows add up).
NATIVE_MAX_ROWS = 8
_VECTOR_OPS = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL", "Div": "DIV", "Min": "MIN", "Max": "MAX"}
_SWAPPED = {"Sub": "RSUB", "Div": "RDIV", "Add": "ADD", "Mul": "MUL", "Min": "MIN", "Max": "MAX"}  # c op x
_UNARY_OPS = {"Tanh": "TANH", "Relu": "RELU", "Neg": "NEG"}


def native_run(graph: PlainGraph) -> Executor | None:
    """The compiled kernel for a chain graph, or None (not a chain, an op or shape it lacks, or not built)."""
    chain = graph.chain()
    in_dim = graph.input_dims[-1] if len(graph.input_dims) == 2 else None
    if _mlp_kernel is None or chain is None or not in_dim:
        return None
    ops, width = [], in_dim
    for node in chain:
        node_ops = _native_ops(node, graph.consts, width)
        if node_ops is None:
            return None
        ops += node_ops
        width = ops[-1][3] if ops else width
    # The kernel computes row by row: from a few rows on, BLAS through numpy is faster.
    return _native_executor(ops, in_dim, numpy_run(graph))


def _native_executor(ops: list[tuple], in_dim: int, batched: Executor | None) -> Executor:
    program = _mlp_kernel.Program(ops, in_dim)
    out_dim, empty, f32 = program.out_dim, np.empty, np.float32

    def run(x: np.ndarray) -> np.ndarray:
        if x.shape[0] > NATIVE_MAX_ROWS and batched is not None:
            return batched(x)
        out = empty((x.shape[0], out_dim), f32)
        program.run(x, out)
        return out

    run.executor = "native"
    run.native = (ops, in_dim, batched)  # what with_output_bounds extends
    return run


def with_output_bounds(run: Executor, low: np.ndarray, high: np.ndarray) -> Executor:
    """run(x) clamped per column, as np.minimum(np.maximum(run(x), low), high) computes it.

    On the native executor the clamp becomes two more kernel ops, so it costs no numpy calls.
    """
    low, high = (np.ascontiguousarray(b, dtype=np.float32) for b in (low, high))
    native = getattr(run, "native", None)
    if native is not None:
        ops, in_dim, batched = native
        width = ops[-1][3] if ops else in_dim
        bounds = [(_mlp_kernel.OP_MAX, low.tobytes(), None, width), (_mlp_kernel.OP_MIN, high.tobytes(), None, width)]
        return _native_executor(ops + bounds, in_dim, None if batched is None else with_output_bounds(batched, low, high))
    minimum, maximum = np.minimum, np.maximum

    def bounded(x: np.ndarray) -> np.ndarray:
        return minimum(maximum(run(x), low), high)

    bounded.executor = getattr(run, "executor", None)
    return bounded


def _native_ops(node: PlainNode, consts: dict, width: int) -> list[tuple] | None:
    """The kernel's (code, values, bias, out_width) ops for one node of a row `width` wide, or None."""
    const = {n: np.asarray(consts[n]) for n in node.ins if n != node.src}
    if any(c.dtype != np.float32 for c in const.values()):
        return None
    code = lambda name: getattr(_mlp_kernel, f"OP_{name}")  # noqa: E731
    if node.op in ("Gemm", "MatMul"):
        weight, bias = _dense_constants(node.op, node.attrs, node.ins, node.src, const)
        if weight is None or weight.shape[0] != width:
            return None
        out = weight.shape[1]
        bias = None if bias is None else _row_vector(bias, out)
        if node.op == "Gemm" and len(node.ins) > 2 and bias is None:
            return None  # a bias that does not broadcast over one row
        return [(code("DENSE"), np.ascontiguousarray(weight).tobytes(), None if bias is None else bias.tobytes(), out)]
    if node.op in _UNARY_OPS and len(node.ins) == 1:
        return [(code(_UNARY_OPS[node.op]), None, None, width)]
    if node.op in _VECTOR_OPS and len(node.ins) == 2:
        first = node.ins[0] == node.src
        value = _row_vector(const[node.ins[1] if first else node.ins[0]], width)
        name = _VECTOR_OPS[node.op] if first else _SWAPPED[node.op]
        return None if value is None else [(code(name), value.tobytes(), None, width)]
    if node.op == "Clip" and node.ins[0] == node.src:
        ops = []
        for index, name in ((1, "MAX"), (2, "MIN")):  # low bound first, as numpy's clip above
            if len(node.ins) > index:
                value = _row_vector(const[node.ins[index]], width)
                if value is None:
                    return None
                ops.append((code(name), value.tobytes(), None, width))
        return ops
    return None


def _row_vector(value: np.ndarray, width: int) -> np.ndarray | None:
    """A constant as one float32 value per column of a (B, width) batch, if it broadcasts so; else None."""
    if value.ndim > 2 or (value.ndim == 2 and value.shape[0] != 1) or value.size not in (1, width):
        return None
    return np.ascontiguousarray(np.broadcast_to(value.reshape(-1), (width,)), dtype=np.float32)
