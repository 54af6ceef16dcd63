"""Everything that exists only so that code written against an earlier version of the
library keeps working, and nothing else.

    paths.py      the one map of old module paths, old names and old keywords, and the
                  one import hook that serves them (installed by utils/training/__init__.py)
    keywords.py   how an old keyword of a class is accepted
    callbacks.py  CheckpointCallback (cadence belongs to FlowCallback)

The library itself never imports this package (tests/test_layering.py checks it).
"""
