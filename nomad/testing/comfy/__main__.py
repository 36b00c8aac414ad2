"""``python -m nomad.testing.comfy``."""

from nomad.testing.comfy._process import main

main()
