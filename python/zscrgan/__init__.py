"""zscrgan: zero-shot text-to-image retrieval (ZSCRGAN) from Python.

Train, embed, retrieve and evaluate from numpy arrays, PyTorch CPU tensors or anything else
that exposes DLPack, the buffer protocol or ``__array_interface__``. Every call goes to the
C++ library (``zscrgan._core``, over include/zscrgan/zscrgan.h); this file only turns Python
arguments into the arrays and JSON text the library takes. A C-contiguous float32 (features)
or int64 (labels) input on the CPU is read in place; anything else is converted first.

Errors: ``ValueError`` for bad input, ``OSError`` for files that cannot be opened, read or
written, ``RuntimeError`` for device failures (``DivergenceError``, a ``RuntimeError``, when
training diverges), each carrying the library's one-line message.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._core import DivergenceError, version

__all__ = ["Dataset", "Model", "TrainResult", "DivergenceError", "train", "load",
           "import_dataset", "version"]

PathLike = Union[str, "os.PathLike[str]"]
Config = Union[Mapping[str, Any], PathLike]


def _array(x: Any, name: str) -> np.ndarray:
    """A numpy view of x (no copy for numpy, DLPack or __array_interface__ objects)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError, ValueError) as e:
            raise ValueError(f"{name}: cannot read the array on the CPU: {e}") from None
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: not an array: {e}") from None


def _matrix(x: Any, name: str) -> np.ndarray:
    a = _array(x, name)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (rows x features), got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name}: expected float or integer values, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _integer(name: str, v: Any, lo: int, hi: int) -> int:
    """v as an int in [lo, hi], else the library's kind of one-line ValueError."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], got {v!r}")
    if not lo <= int(v) <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {int(v)}")
    return int(v)


_INT_MAX, _INT64_MAX, _UINT64_MAX = 2**31 - 1, 2**63 - 1, 2**64 - 1


def _labels(x: Any, name: str) -> np.ndarray:
    a = _array(x, name)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class ids, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class ids, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _config_args(config: Config) -> Tuple[str, str, str]:
    """(config_json, config_path, source) for the library."""
    if isinstance(config, Mapping):
        return json.dumps(dict(config)), "", "the config dict"
    if isinstance(config, (str, os.PathLike)):
        return "", os.fspath(config), ""
    raise TypeError(f"config: expected a dict or a path, got {type(config).__name__}")


class Dataset:
    """A zero-shot retrieval dataset (datasets/README.md), validated as the CLI validates one."""

    def __init__(self, core: _core.Dataset) -> None:
        self._core = core

    @staticmethod
    def from_arrays(image_features: Any, image_labels: Any, text_features: Any,
                    text_labels: Any, train_classes: Any, test_classes: Any,
                    name: str = "arrays") -> "Dataset":
        return Dataset(_core.Dataset.from_arrays(
            _matrix(image_features, "image_features"), _labels(image_labels, "image_labels"),
            _matrix(text_features, "text_features"), _labels(text_labels, "text_labels"),
            _labels(train_classes, "train_classes"), _labels(test_classes, "test_classes"),
            name))

    @staticmethod
    def load(folder: PathLike) -> "Dataset":
        """An interchange folder: dataset.json and four .npy files."""
        return Dataset(_core.Dataset.load(os.fspath(folder)))

    @staticmethod
    def from_config(config: Config) -> "Dataset":
        """The dataset a configuration names ("synthetic", or a folder under datasets_root)."""
        if isinstance(config, Mapping):
            return Dataset(_core.Dataset._from_config(json.dumps(dict(config)), "the config dict"))
        path = os.fspath(config)
        with open(path, encoding="utf-8") as f:
            return Dataset(_core.Dataset._from_config(f.read(), path))

    @staticmethod
    def synthetic(**spec: Any) -> "Dataset":
        """The embedded synthetic dataset; keyword arguments are its `synthetic` keys (seed=3)."""
        return Dataset.from_config({"dataset": "synthetic", "synthetic": spec})

    def save(self, folder: PathLike) -> None:
        self._core.save(os.fspath(folder))

    @property
    def name(self) -> str:
        return self._core.name

    # Read-only views of the library's arrays (no copies).
    @property
    def image_features(self) -> np.ndarray:
        return self._core.image_features

    @property
    def image_labels(self) -> np.ndarray:
        return self._core.image_labels

    @property
    def text_features(self) -> np.ndarray:
        return self._core.text_features

    @property
    def text_labels(self) -> np.ndarray:
        return self._core.text_labels

    @property
    def train_classes(self) -> np.ndarray:
        return self._core.train_classes

    @property
    def test_classes(self) -> np.ndarray:
        return self._core.test_classes

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: {self.image_features.shape[0]} images of "
                f"{self.image_features.shape[1]}, {self.text_features.shape[0]} texts of "
                f"{self.text_features.shape[1]}, {len(self.train_classes)} seen and "
                f"{len(self.test_classes)} unseen classes)")


@dataclass
class TrainResult:
    """A run's metrics history (one dict per round, the metrics.jsonl lines) and checkpoints.

    Unpacks as ``history, best_checkpoint = zscrgan.train(...)``."""
    history: List[Dict[str, Any]]
    best_checkpoint: Optional[str]
    last_checkpoint: str
    output_dir: str
    best_score: float = 0.0
    best_round: int = 0
    stopped: bool = False  # stopped early (on_round returned False, or a signal)
    extra: Dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.history, self.best_checkpoint))


def train(config: Config, dataset: Optional[Dataset] = None, output_dir: Optional[PathLike] = None,
          device: Optional[str] = None, on_round: Optional[Callable[[Dict[str, Any]], Any]] = None,
          overrides: Sequence[str] = (), quiet: bool = False, overwrite: bool = False) -> TrainResult:
    """Trains as ``zscrgan_cuda --config`` does and returns the metrics history.

    config: a dict with the config file's keys, or a config file's path. dataset: train on it
    instead of the one the config names. device: auto, cpu or cuda; None keeps the config's.
    A folder that holds an earlier run is refused unless
    overwrite is true, which replaces that run. on_round(metrics) is called after every round (after
    its checkpoint is written); returning False stops the run. Ctrl-C stops the run as SIGINT
    stops the CLI (checkpoints/last written) and raises KeyboardInterrupt."""
    config_json, config_path, source = _config_args(config)
    callback = None
    if on_round is not None:
        def callback(record: str) -> Any:
            return on_round(json.loads(record))
    r = _core._train(config_json, config_path, source, list(overrides),
                     dataset._core if dataset is not None else None,
                     os.fspath(output_dir) if output_dir is not None else "", overwrite,
                     device or "", callback, quiet)
    return TrainResult(history=[json.loads(line) for line in r["rounds"]],
                       best_checkpoint=r["best_checkpoint"] or None,
                       last_checkpoint=r["last_checkpoint"], output_dir=r["output_dir"],
                       best_score=r["best_score"], best_round=r["best_round"],
                       stopped=bool(r["stopped_by_caller"] or r["stopped_by_signal"]),
                       extra={"stopped_by_signal": r["stopped_by_signal"]})


class Model:
    """A trained model: embed texts and images, retrieve, evaluate (as the CLI commands do)."""

    def __init__(self, core: _core.Model) -> None:
        self._core = core

    @property
    def text_dim(self) -> int:
        return self._core.text_dim

    @property
    def image_dim(self) -> int:
        return self._core.image_dim

    @property
    def embed_dim(self) -> int:
        return self._core.embed_dim

    @property
    def seed(self) -> int:
        """The run's seed: pass it as seed= to draw the queries the run evaluated this
        checkpoint's round with."""
        return self._core.seed

    @property
    def config(self) -> Dict[str, Any]:
        return json.loads(self._core.config_json)

    @property
    def device(self) -> str:
        return self._core.device

    def embed_texts(self, texts: Any, samples: int = 1, seed: int = 0) -> np.ndarray:
        """N x embed_dim query embeddings (what ``zscrgan_cuda embed --texts`` writes)."""
        return self._core._embed_texts(_matrix(texts, "texts"), _integer("samples", samples, 1, _INT_MAX),
                                       _integer("seed", seed, 0, _UINT64_MAX))

    def embed_images(self, images: Any, chunk_rows: int = 65536) -> np.ndarray:
        """M x embed_dim CSEM embeddings (what ``zscrgan_cuda embed --images`` writes)."""
        return self._core._embed_images(_matrix(images, "images"),
                                        _integer("chunk_rows", chunk_rows, 1, _INT64_MAX))

    def retrieve(self, texts: Any, gallery: Any, k: int = 50, samples: int = 1, seed: int = 0,
                 chunk_rows: int = 65536) -> Tuple[np.ndarray, np.ndarray]:
        """(indices, scores), each N x k, best first: ``zscrgan_cuda retrieve``'s lists."""
        t, g = _matrix(texts, "texts"), _matrix(gallery, "gallery")
        k = _integer("k", k, 1, _INT_MAX)
        if k > g.shape[0]:  # before the N x k results are allocated
            raise ValueError(f"gallery: top_k {k} exceeds the gallery's {g.shape[0]} rows")
        return self._core._retrieve(t, g, k, _integer("samples", samples, 1, _INT_MAX),
                                    _integer("seed", seed, 0, _UINT64_MAX),
                                    _integer("chunk_rows", chunk_rows, 1, _INT64_MAX))

    def evaluate(self, dataset: Dataset) -> Dict[str, Any]:
        """k, prec_at_k, map_at_k, top1 (and the query and gallery counts) on the dataset:
        the metrics the run logged for this checkpoint's round on its own dataset."""
        return self._core.evaluate(dataset._core)


def load(checkpoint: PathLike, device: str = "auto") -> Model:
    """A checkpoint written by training (checkpoints/best.safetensors or last)."""
    return Model(_core.Model.load(os.fspath(checkpoint), device))


def import_dataset(format: str, input: PathLike, output: PathLike, *,
                   class_embedding: Optional[PathLike] = None, original_att: bool = False,
                   split: Optional[str] = None, name: Optional[str] = None) -> str:
    """``zscrgan_cuda import``: reads a published format (xlsa17, gazsl, interchange), writes
    the interchange folder and returns the summary it prints. split: gazsl's "easy" (SCS, the
    default) or "hard" (SCE)."""
    return _core._import_dataset(format, os.fspath(input), os.fspath(output),
                                 os.fspath(class_embedding) if class_embedding else "",
                                 original_att, split or "", name or "")
