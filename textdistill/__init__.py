"""textdistill: knowledge distillation for NLP: a small, fast student that keeps a big teacher's quality."""

import os

# Models and data are read from local folders and packages; never reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"
