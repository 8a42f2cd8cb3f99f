/* Module definition of the transport's CPython extension (functions in rows.c and ids.c). */
#include "native.h"

static PyMethodDef functions[] = {
    {"hex_ids", (PyCFunction)(void (*)(void))hex_ids, METH_FASTCALL,
     "hex_ids(prefix, first, n): [prefix + '%x' % k for k in range(first, first + n)] (prefix ASCII)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rollspec_transport_native", "The transport's per-item hot loops in C.", -1, functions,
};

PyMODINIT_FUNC PyInit_rollspec_transport_native(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (add_row_builder(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
