"""Alternative generation backends behind the engine's `Generator` interface (engine/generator.py).

Each backend imports its third-party engine lazily, inside the module that uses it, so choosing
the built-in engine never imports (or requires) vLLM.
"""
