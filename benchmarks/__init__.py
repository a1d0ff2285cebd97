"""Scripts that measure what rlra_tf does, and the report that judges the results.

See benchmarks/README.md: one package per concept (accuracy, speed, alignment, export, peers),
one registry of benchmarks (`registry`), one of rule variants (`variants`), the suite runner
(`run`) and the report (`report`).
"""
