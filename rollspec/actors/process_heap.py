"""An actor process's start-up heap, taken out of the cyclic garbage collector's walks.

An actor imports torch (and Ray, and more) and loads its models before it moves any item: ~176k
objects that live as long as the process. Every full collection walks all of them (~40-50 ms here),
and the data plane's allocations set one off every few hundred thousand items (~0.1-0.3 us per 1 KB
item at a consumer). gc.freeze() moves them to a permanent generation that collections skip; the
collection just before it leaves only live objects to freeze. What this gives up: a reference cycle
among frozen objects that becomes garbage later is never freed (bounded by the start-up heap, which
is meant to live anyway); frozen objects that lose their last reference (old weights after a swap)
are freed by reference counting as before. At exit the heap is unfrozen, so the interpreter's last
collection frees its cycles as it would have (extensions that check for leaks at exit, nanobind's in
triton, otherwise report the frozen ones).
"""

import atexit
import gc


def freeze_startup_heap() -> int:
    """Collect, then freeze every object that survived; returns the number frozen. Call once per process,
    after its imports and model loading, before its loop moves items (every actor, the controller and
    bench/transport's stand-ins for them do). A later call in a process that froze already (two actors
    built in one test process) does nothing, so objects made since stay collectable."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
        atexit.register(gc.unfreeze)
    return gc.get_freeze_count()
