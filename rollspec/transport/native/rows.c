/* Schema instances from already checked field values, in C (transport/native.py).

A packed segment's rows come out of msgspec as tuples whose every value passed the schema's compiled
checks; what is left per item is what wire_types._builder does in Python: object.__new__(cls), one
slot store per field, then cls.check() if the class has one. As Python that is ~0.4 us per item, the
largest single step of a 1 KB item's receive path; here it is an allocation and a few pointer stores.

Safety: a RowBuilder writes only at the offsets of the class's own object slots (member descriptors
of type T_OBJECT_EX, found and checked here, never taken from the caller), and only into instances of
that class it allocated itself; a row that is not a tuple of exactly one value per field is refused
(TypeError) before anything is built from it.

Garbage collector: an instance that refers to nothing a cycle could pass through (all its values ints,
floats, str, bytes, None: objects the collector does not track) is untracked, as CPython does for such
dicts and tuples. A consumer holds each item from get_batch to its ack; tracked, the items would be
traversed by young collections, promoted, and set off full collections that walk the whole process (all
of torch's objects): ~0.3 us per 1 KB item. Only for classes without an instance __dict__ (schema classes are frozen and slotted), so
an instance stays as it was built; its own class is not counted as a referent: a class outlives its
instances (a registry holds it), as for msgspec's gc=False structs. */

#include "native.h"

#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;
    Py_ssize_t nfields;
    Py_ssize_t *offsets;
    int has_check;
    int may_untrack; /* instances have no __dict__: what is built is all they will ever hold */
} RowBuilder;

static PyObject *check_name;

static void builder_dealloc(RowBuilder *self) {
    Py_XDECREF(self->cls);
    PyMem_Free(self->offsets);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* RowBuilder(cls, names, has_check): TypeError unless every name is a writable object slot of cls and
   instances of cls are made by object.__new__ (what the Python builder calls). */
static PyObject *builder_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *cls_obj, *names;
    int has_check;
    if (!PyArg_ParseTuple(args, "O!O!p", &PyType_Type, &cls_obj, &PyTuple_Type, &names, &has_check))
        return NULL;
    PyTypeObject *cls = (PyTypeObject *)cls_obj;
    if (cls->tp_new != PyBaseObject_Type.tp_new || cls->tp_itemsize != 0 ||
        (cls->tp_flags & Py_TPFLAGS_IS_ABSTRACT) || cls->tp_alloc == NULL) {
        PyErr_Format(PyExc_TypeError, "%s: instances are not plain object.__new__ ones", cls->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    RowBuilder *self = (RowBuilder *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->offsets = PyMem_Calloc(n ? n : 1, sizeof(Py_ssize_t));
    if (self->offsets == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "field names must be str");
            Py_DECREF(self);
            return NULL;
        }
        PyObject *descr = _PyType_Lookup(cls, name); /* borrowed */
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s.%U is not a slot", cls->tp_name, name);
            Py_DECREF(self);
            return NULL;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        PyTypeObject *owner = ((PyDescrObject *)descr)->d_type;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY) || !PyType_IsSubtype(cls, owner) ||
            member->offset < (Py_ssize_t)sizeof(PyObject) ||
            member->offset + (Py_ssize_t)sizeof(PyObject *) > cls->tp_basicsize) {
            PyErr_Format(PyExc_TypeError, "%s.%U is not a writable object slot", cls->tp_name, name);
            Py_DECREF(self);
            return NULL;
        }
        self->offsets[i] = member->offset;
    }
    Py_INCREF(cls);
    self->cls = cls;
    self->nfields = n;
    self->has_check = has_check;
    self->may_untrack = cls->tp_dictoffset == 0 && PyType_IS_GC(cls)
#ifdef Py_TPFLAGS_MANAGED_DICT
                        && !(cls->tp_flags & Py_TPFLAGS_MANAGED_DICT)
#endif
        ;
    return (PyObject *)self;
}

/* tp_traverse visitor: nonzero for a referent a cycle could pass through (CPython's rule for dict values,
   _PyObject_GC_MAY_BE_TRACKED), skipping the instance's own class. */
static int visit_may_cycle(PyObject *referent, void *cls) {
    if (referent == (PyObject *)cls || !PyObject_IS_GC(referent)) return 0;
    return !PyTuple_CheckExact(referent) || PyObject_GC_IsTracked(referent);
}

/* One instance from one row; NULL with an exception set on a malformed row or a failing check(). */
static PyObject *build_one(RowBuilder *self, PyObject *row) {
    if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != self->nfields) {
        PyErr_Format(PyExc_TypeError, "a row of %s must be a tuple of %zd values", self->cls->tp_name, self->nfields);
        return NULL;
    }
    PyObject *obj = self->cls->tp_alloc(self->cls, 0);
    if (obj == NULL) return NULL;
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        PyObject *value = PyTuple_GET_ITEM(row, i);
        PyObject **slot = (PyObject **)((char *)obj + self->offsets[i]);
        Py_INCREF(value);
        Py_XSETREF(*slot, value);
    }
    if (self->has_check) {
        PyObject *ok = PyObject_CallMethodNoArgs(obj, check_name);
        if (ok == NULL) {
            Py_DECREF(obj);
            return NULL;
        }
        Py_DECREF(ok);
    }
    if (self->may_untrack && Py_TYPE(obj)->tp_traverse(obj, visit_may_cycle, self->cls) == 0)
        PyObject_GC_UnTrack(obj);
    return obj;
}

/* builder(row) -> instance */
static PyObject *builder_call(PyObject *self, PyObject *args, PyObject *kwds) {
    PyObject *row;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O", &row)) return NULL;
    return build_one((RowBuilder *)self, row);
}

/* builder.many(rows) -> list of instances, rows a list */
static PyObject *builder_many(PyObject *self, PyObject *rows) {
    if (!PyList_CheckExact(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows must be a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* check() may run Python that mutates `rows`: re-read its size each time */
        if (i >= PyList_GET_SIZE(rows)) {
            PyErr_SetString(PyExc_RuntimeError, "rows changed size while building");
            Py_DECREF(out);
            return NULL;
        }
        /* held while building: the allocation may run a collection, and so arbitrary finalizers */
        PyObject *row = PyList_GET_ITEM(rows, i);
        Py_INCREF(row);
        PyObject *obj = build_one((RowBuilder *)self, row);
        Py_DECREF(row);
        if (obj == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, obj);
    }
    return out;
}

static PyMethodDef builder_methods[] = {
    {"many", builder_many, METH_O, "Instances of the rows of a list, in order."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RowBuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "rollspec_transport_native.RowBuilder",
    .tp_basicsize = sizeof(RowBuilder),
    .tp_dealloc = (destructor)builder_dealloc,
    .tp_call = builder_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RowBuilder(cls, names, has_check): schema instances from checked field-value tuples.",
    .tp_methods = builder_methods,
    .tp_new = builder_new,
};

int add_row_builder(PyObject *module) {
    if (PyType_Ready(&RowBuilderType) < 0) return -1;
    check_name = PyUnicode_InternFromString("check");
    if (check_name == NULL) return -1;
    Py_INCREF(&RowBuilderType);
    if (PyModule_AddObject(module, "RowBuilder", (PyObject *)&RowBuilderType) < 0) {
        Py_DECREF(&RowBuilderType);
        return -1;
    }
    return 0;
}
