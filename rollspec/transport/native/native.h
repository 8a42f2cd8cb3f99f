/* The transport's CPython extension (transport/native.py): one module, one file per hot loop. */
#ifndef ROLLSPEC_TRANSPORT_NATIVE_H
#define ROLLSPEC_TRANSPORT_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

int add_row_builder(PyObject *module);                                  /* rows.c */
PyObject *hex_ids(PyObject *self, PyObject *const *args, Py_ssize_t nargs);  /* ids.c */

#endif
