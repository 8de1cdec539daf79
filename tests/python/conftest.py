import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("ZSCRGAN_BUILD_DIR", ROOT / "build"))
# The module built by tools/build.sh (build/python/zscrgan) unless one is installed already.
if (BUILD / "python" / "zscrgan").is_dir():
    sys.path.insert(0, str(BUILD / "python"))


def small_config(**overrides):
    """A configuration whose rounds take milliseconds (tests/small_config.h's)."""
    c = {
        "gf_dim": 32, "df_dim": 16, "embed_dim": 8, "z_dim": 4,
        "e_step_iters": 6, "m_step_iters": 6, "top_k": 10, "rounds": 3, "seed": 5,
        "device": "cpu",
        "synthetic": {"seen_classes": 8, "unseen_classes": 4, "images_per_class": 15,
                      "text_dim": 12, "image_dim": 16},
    }
    c.update(overrides)
    return c


@pytest.fixture(scope="session")
def cli():
    path = pathlib.Path(os.environ.get("ZSCRGAN_CLI", BUILD / "zscrgan_cuda"))
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return str(path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One small run shared by the read-only tests: (result, dataset, config)."""
    import zscrgan
    cfg = small_config()
    out = tmp_path_factory.mktemp("run")
    result = zscrgan.train(cfg, output_dir=out, device="cpu", quiet=True)
    return result, zscrgan.Dataset.from_config(cfg), cfg
