#!/usr/bin/env python3
"""Writes tests/fixtures/python_written.safetensors with the Python `safetensors` library.

tests/test_safetensors.cc reads the file, checks every value below, and checks that our writer
reproduces it byte for byte. Needs the python3 that PyPI's pip installs into (not Debian's):

    python3 -m pip install safetensors numpy
    python3 tools/make_safetensors_fixture.py [output path]
"""
import os
import sys

import numpy as np
from safetensors.numpy import save_file


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "tests", "fixtures", "python_written.safetensors")
    tensors = {
        "param/critic.w1": (np.arange(6, dtype=np.float32) * 0.5 - 1.0).reshape(2, 3),
        "state/count": np.array([-1, 0, 2**40], dtype=np.int64),
        "scalar": np.array(3.25, dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "bytes": np.array([0, 1, 254, 255], dtype=np.uint8),
        "idx": np.array([-7, 7], dtype=np.int32),
        "cursor": np.array([2**63 - 1], dtype=np.uint64),
        "half": np.array([1.0, -2.0], dtype=np.float16),
    }
    # One metadata key: the library writes metadata in hash-map order, so only then is the
    # file's byte layout fully determined.
    save_file(tensors, out, metadata={"format": "zscrgan-test/1 \u00e9\n"})
    print(f"wrote {os.path.normpath(out)} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
