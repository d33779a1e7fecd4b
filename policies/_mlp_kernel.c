/* A small MLP forward pass in C: the chain of dense layers and elementwise ops of a policy graph.
 *
 * policies/graph_executors.py turns a plain-MLP ONNX graph into a list of ops and builds a
 * Program from it; Program.run(x, out) computes one float32 batch. At batch 1 a 64x64 policy is
 * a few thousand multiply-adds: numpy spends ten times longer in per-call overhead than in
 * arithmetic, this spends about a microsecond in all. Every result is checked against
 * onnxruntime when a bundle loads (executor_matches), so this file only has to be right, not
 * clever: rows are computed one at a time through two scratch vectors.
 *
 * Ops (their codes are the OP_* constants below, exported to Python under the same names):
 *   DENSE   y = x @ W + b       W: in x out, row-major; b: out values or none
 *   ADD, SUB, MUL, DIV, MIN, MAX    y = x op c     c: one value per column
 *   RSUB, RDIV                      y = c op x
 *   TANH, RELU, NEG                 y = f(x)
 * MIN, MAX and RELU return NaN for a NaN input, as numpy and onnxruntime do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_DENSE = 1, OP_ADD, OP_SUB, OP_RSUB, OP_MUL, OP_DIV, OP_RDIV, OP_MIN, OP_MAX, OP_TANH, OP_RELU, OP_NEG,
};

/* Above this many multiply-adds per call the GIL is released (other threads may run meanwhile). */
#define RELEASE_GIL_MACS 100000

typedef struct {
    int code;
    Py_ssize_t in, out; /* widths before and after */
    float *values;      /* DENSE: weights (in x out); vector ops: the constant (out); else NULL */
    float *bias;        /* DENSE only, may be NULL */
} Op;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n_ops, in_dim, out_dim, max_width, macs_per_row;
    Op *ops;
} Program;

static void program_free_ops(Program *self) {
    if (self->ops != NULL) {
        for (Py_ssize_t i = 0; i < self->n_ops; i++) {
            free(self->ops[i].values);
            free(self->ops[i].bias);
        }
        free(self->ops);
        self->ops = NULL;
    }
    self->n_ops = 0;
}

static void program_dealloc(Program *self) {
    program_free_ops(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A copy of `count` float32 values from a bytes object; NULL with an exception set on a size mismatch. */
static float *copy_floats(PyObject *data, Py_ssize_t count, Py_ssize_t index, const char *what) {
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "op %zd: %s must be bytes of float32 values", index, what);
        return NULL;
    }
    if (PyBytes_GET_SIZE(data) != count * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "op %zd: %s has %zd bytes, expected %zd float32 values", index, what,
                     PyBytes_GET_SIZE(data), count);
        return NULL;
    }
    float *copy = malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, PyBytes_AS_STRING(data), (size_t)count * sizeof(float));
    return copy;
}

/* Program(ops, in_dim): ops is a list of (code, values: bytes | None, bias: bytes | None, out_width). */
static int program_init(Program *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ops", "in_dim", NULL};
    PyObject *ops;
    Py_ssize_t in_dim;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On", kwlist, &ops, &in_dim))
        return -1;
    if (self->ops != NULL) { /* run() may be using them with the GIL released */
        PyErr_SetString(PyExc_TypeError, "a Program is initialised once; make a new one");
        return -1;
    }
    PyObject *seq = PySequence_Fast(ops, "ops must be a list of (code, values, bias, out_width) tuples");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (in_dim <= 0) {
        PyErr_SetString(PyExc_ValueError, "in_dim must be positive");
        goto fail;
    }
    self->ops = calloc((size_t)(n > 0 ? n : 1), sizeof(Op));
    if (self->ops == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    self->n_ops = n;
    self->in_dim = in_dim;
    self->max_width = in_dim;
    self->macs_per_row = 0;
    Py_ssize_t width = in_dim;
    for (Py_ssize_t i = 0; i < n; i++) {
        int code;
        PyObject *values, *bias;
        Py_ssize_t out;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iOOn;each op is (code, values, bias, out_width)",
                              &code, &values, &bias, &out))
            goto fail;
        Op *op = &self->ops[i];
        op->code = code;
        op->in = width;
        op->out = out;
        if (out <= 0) {
            PyErr_Format(PyExc_ValueError, "op %zd: out_width must be positive", i);
            goto fail;
        }
        if (code == OP_DENSE) {
            if ((op->values = copy_floats(values, width * out, i, "weights")) == NULL)
                goto fail;
            if (bias != Py_None && (op->bias = copy_floats(bias, out, i, "bias")) == NULL)
                goto fail;
            self->macs_per_row += width * out;
        } else if (code >= OP_ADD && code <= OP_MAX) {
            if (out != width) {
                PyErr_Format(PyExc_ValueError, "op %zd: an elementwise op keeps the width %zd", i, width);
                goto fail;
            }
            if ((op->values = copy_floats(values, out, i, "constant")) == NULL)
                goto fail;
        } else if (code == OP_TANH || code == OP_RELU || code == OP_NEG) {
            if (out != width) {
                PyErr_Format(PyExc_ValueError, "op %zd: an elementwise op keeps the width %zd", i, width);
                goto fail;
            }
        } else {
            PyErr_Format(PyExc_ValueError, "op %zd: unknown op code %d", i, code);
            goto fail;
        }
        width = out;
        if (width > self->max_width)
            self->max_width = width;
    }
    self->out_dim = width;
    Py_DECREF(seq);
    return 0;
fail:
    program_free_ops(self);
    Py_DECREF(seq);
    return -1;
}

/* exp(-y) for y in [0, 18]: Cody-Waite range reduction, a degree-7 Taylor polynomial on
 * |r| <= ln2/2 (truncation ~5e-9), and 2^-n put together from its bits. */
static inline float exp_neg(float y) {
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693145751953125f, ln2_lo = 1.42860682030941723e-6f;
    const int n = (int)(y * log2e + 0.5f); /* round(y / ln2), y >= 0 */
    float r = (float)n * ln2_hi - y;        /* n ln2 - y, in [-ln2/2, ln2/2] */
    r = r + (float)n * ln2_lo;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    const int32_t bits = (127 - n) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh in float32 that the compiler can vectorize (libm's tanhf is a scalar call, ~20 ns): an odd
 * Taylor polynomial below |x| = 0.25, else (1 - e) / (1 + e) with e = exp(-2|x|), +-1 from |x| = 9
 * (tanh(9) rounds to 1). Measured against float64 tanh on 2,000,001 points in [-12, 12]: at most
 * 2.6 ulp, 9e-8 absolute (tanhf: 2.1 ulp); NaN stays NaN, +-inf gives +-1. */
static inline float tanh_f32(float x) {
    const float a = fabsf(x);
    const float e = exp_neg(2.0f * (a < 9.0f ? a : 9.0f));
    const float far = copysignf((1.0f - e) / (1.0f + e), x);
    const float x2 = x * x;
    const float near = x + x * x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835 + x2 * (-1382.0f / 155925)))));
    const float t = a < 0.25f ? near : far;
    return x != x ? x : t;
}

/* numpy's maximum/minimum exactly: NaN wins, and between equal values (0.0 and -0.0) the first. */
static inline float nan_or_max(float x, float c) { return (x != x || x >= c) ? x : c; }
static inline float nan_or_min(float x, float c) { return (x != x || x <= c) ? x : c; }

/* y = x @ w (+ bias): separate function so the compiler knows y, x and w do not overlap. */
static void dense(float *restrict y, const float *restrict x, const float *restrict w, const float *restrict bias,
                  Py_ssize_t in, Py_ssize_t out) {
    memset(y, 0, (size_t)out * sizeof(float));
    for (Py_ssize_t i = 0; i < in; i++) {
        const float xi = x[i];
        const float *restrict row = w + i * out;
        for (Py_ssize_t j = 0; j < out; j++)
            y[j] += xi * row[j];
    }
    if (bias != NULL)
        for (Py_ssize_t j = 0; j < out; j++)
            y[j] += bias[j];
}

/* One row through every op; `a` holds the input (in_dim values) and on return the output. */
static float *run_row(const Program *p, float *a, float *b) {
    for (Py_ssize_t k = 0; k < p->n_ops; k++) {
        const Op *op = &p->ops[k];
        const Py_ssize_t out = op->out;
        const float *c = op->values;
        if (op->code == OP_DENSE) {
            dense(b, a, c, op->bias, op->in, out);
            float *t = a;
            a = b;
            b = t;
            continue;
        }
        switch (op->code) {
        case OP_ADD: for (Py_ssize_t j = 0; j < out; j++) a[j] = a[j] + c[j]; break;
        case OP_SUB: for (Py_ssize_t j = 0; j < out; j++) a[j] = a[j] - c[j]; break;
        case OP_RSUB: for (Py_ssize_t j = 0; j < out; j++) a[j] = c[j] - a[j]; break;
        case OP_MUL: for (Py_ssize_t j = 0; j < out; j++) a[j] = a[j] * c[j]; break;
        case OP_DIV: for (Py_ssize_t j = 0; j < out; j++) a[j] = a[j] / c[j]; break;
        case OP_RDIV: for (Py_ssize_t j = 0; j < out; j++) a[j] = c[j] / a[j]; break;
        case OP_MIN: for (Py_ssize_t j = 0; j < out; j++) a[j] = nan_or_min(a[j], c[j]); break;
        case OP_MAX: for (Py_ssize_t j = 0; j < out; j++) a[j] = nan_or_max(a[j], c[j]); break;
        case OP_TANH: for (Py_ssize_t j = 0; j < out; j++) a[j] = tanh_f32(a[j]); break;
        case OP_RELU: for (Py_ssize_t j = 0; j < out; j++) a[j] = nan_or_max(a[j], 0.0f); break;
        case OP_NEG: for (Py_ssize_t j = 0; j < out; j++) a[j] = -a[j]; break;
        }
    }
    return a;
}

static int is_float32(const Py_buffer *view) {
    const char *f = view->format;
    if (f == NULL)
        return 0;
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    return view->itemsize == 4 && f[0] == 'f' && f[1] == '\0';
}

/* run(x, out): x float32 (rows, in_dim) and out float32 (rows, out_dim), both C-contiguous. */
static PyObject *program_run(Program *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "run(x, out) takes two arrays");
        return NULL;
    }
    Py_buffer x, out;
    if (PyObject_GetBuffer(args[0], &x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    PyObject *result = NULL;
    if (!is_float32(&x) || x.ndim != 2 || x.shape[1] != self->in_dim) {
        PyErr_Format(PyExc_ValueError, "x must be float32 of shape (rows, %zd)", self->in_dim);
        goto done;
    }
    const Py_ssize_t rows = x.shape[0];
    if (!is_float32(&out) || out.ndim != 2 || out.shape[0] != rows || out.shape[1] != self->out_dim) {
        PyErr_Format(PyExc_ValueError, "out must be float32 of shape (%zd, %zd)", rows, self->out_dim);
        goto done;
    }
    float *scratch = malloc((size_t)(2 * self->max_width) * sizeof(float));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const float *src = x.buf;
    float *dst = out.buf;
    const int release = rows * self->macs_per_row > RELEASE_GIL_MACS;
    PyThreadState *state = release ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t r = 0; r < rows; r++) {
        memcpy(scratch, src + r * self->in_dim, (size_t)self->in_dim * sizeof(float));
        const float *y = run_row(self, scratch, scratch + self->max_width);
        memcpy(dst + r * self->out_dim, y, (size_t)self->out_dim * sizeof(float));
    }
    if (release)
        PyEval_RestoreThread(state);
    free(scratch);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *program_get_out_dim(Program *self, void *closure) { return PyLong_FromSsize_t(self->out_dim); }

static PyMethodDef program_methods[] = {
    {"run", (PyCFunction)(void (*)(void))program_run, METH_FASTCALL,
     "run(x, out): out[:] = the program applied to each row of x (float32, C-contiguous)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef program_getset[] = {
    {"out_dim", (getter)program_get_out_dim, NULL, "output width", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "policies._mlp_kernel.Program",
    .tp_doc = "Program(ops, in_dim): a chain of dense and elementwise float32 ops; run(x, out) computes it.",
    .tp_basicsize = sizeof(Program),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)program_init,
    .tp_dealloc = (destructor)program_dealloc,
    .tp_methods = program_methods,
    .tp_getset = program_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mlp_kernel", "Small float32 MLP forward passes in C (see policies/graph_executors.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__mlp_kernel(void) {
    if (PyType_Ready(&ProgramType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Program", (PyObject *)&ProgramType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    static const struct { const char *name; int code; } codes[] = {
        {"OP_DENSE", OP_DENSE}, {"OP_ADD", OP_ADD}, {"OP_SUB", OP_SUB}, {"OP_RSUB", OP_RSUB}, {"OP_MUL", OP_MUL},
        {"OP_DIV", OP_DIV}, {"OP_RDIV", OP_RDIV}, {"OP_MIN", OP_MIN}, {"OP_MAX", OP_MAX}, {"OP_TANH", OP_TANH},
        {"OP_RELU", OP_RELU}, {"OP_NEG", OP_NEG},
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (PyModule_AddIntConstant(m, codes[i].name, codes[i].code) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
