"""Settings for the whole suite."""

import os

from hypothesis import settings

# Property tests: no per-example deadline, which a loaded 2-core machine would miss now and
# then; in CI (.ci/run sets CI), the same examples every run, so that a failure there can be
# reproduced rather than found once by chance (locally, each run explores new ones).
settings.register_profile("local", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")
