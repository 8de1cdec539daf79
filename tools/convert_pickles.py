#!/usr/bin/python3
"""Converts the published ZSCRGAN pickle folders to the interchange format (datasets/README.md).

Needs numpy for Debian's /usr/bin/python3 (apt-get install python3-numpy).

    /usr/bin/python3 tools/convert_pickles.py INPUT_DIR OUTPUT_DIR [--name NAME]

INPUT_DIR holds the four pickles of a dataset as its authors publish it (Python 2 pickles of
numpy arrays):

    txt_embed_dict.pkl    {class id: [1-D text vector, ...]}   a class's first text comes first
    image_embed_dict.pkl  {class id: [1-D image vector, ...]}
    trainids.pkl          [class id, ...]   seen classes, in this order
    testids.pkl           [class id, ...]   unseen classes

OUTPUT_DIR receives image_features.npy, image_labels.npy, text_features.npy, text_labels.npy and
dataset.json. Rows are grouped by class in trainids then testids order, and each class's texts
keep their order, so its first text (the one training uses) stays first. Classes in the dicts but
in neither split are left out (a note says how many).

    /usr/bin/python3 tools/convert_pickles.py --gazsl-labels DIR

converts GAZSL's label pickles (labels_train.pkl, labels_test.pkl, labels_train_hard.pkl,
labels_test_hard.pkl, whichever DIR holds) into .npy files of the same names beside them, which
`zscrgan_cuda import --format gazsl` reads.

Unpickling runs whatever code the file asks for: convert only folders from a source you trust.

Everything is written into a temporary sibling, read back and compared, and only then renamed
into place; any error is one line naming the file and the problem, with a non-zero exit status
and nothing left behind.
"""

import argparse
import json
import os
import pickle
import shutil
import sys
import tempfile
import warnings

try:
    import numpy as np
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write("convert_pickles: numpy is missing for %s (Debian: apt-get install "
                     "python3-numpy; run this tool with /usr/bin/python3)\n" % sys.executable)
    sys.exit(2)

PROG = "convert_pickles"
DATASET_FILES = ("dataset.json", "image_features.npy", "image_labels.npy", "text_features.npy",
                 "text_labels.npy")
GAZSL_LABEL_STEMS = ("labels_train", "labels_test", "labels_train_hard", "labels_test_hard")
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


class Failure(Exception):
    """One line for the user: the file and what is wrong with it."""

    def __init__(self, path, problem):
        super().__init__("%s: %s" % (path, problem))


def one_line(text):
    return " ".join(str(text).split())


def warn(text):
    sys.stderr.write("%s: warning: %s\n" % (PROG, text))


def note(text):
    sys.stdout.write("%s: %s\n" % (PROG, text))


def load_pickle(path):
    if not os.path.isfile(path):
        raise Failure(path, "not found")
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            # numpy may warn about its own renamed modules while rebuilding old arrays.
            warnings.simplefilter("ignore")
            # Python 2 pickles store numpy's raw bytes as str; latin1 maps them back 1:1.
            return pickle.load(f, encoding="latin1")
    except Exception as e:  # anything the file makes the unpickler do
        raise Failure(path, "cannot unpickle: %s: %s" % (type(e).__name__, one_line(e)))


def class_id(value, path, where):
    if isinstance(value, (bool, np.bool_)):
        raise Failure(path, "%s is a boolean (%r), not an integer class id" % (where, value))
    if isinstance(value, (int, np.integer)):
        v = int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        v = int(value)
    else:
        raise Failure(path, "%s is %r (%s), not an integer class id"
                      % (where, value, type(value).__name__))
    if not INT64_MIN <= v <= INT64_MAX:
        raise Failure(path, "%s is %d, outside int64" % (where, v))
    return v


def id_list(obj, path):
    if isinstance(obj, np.ndarray):
        if obj.ndim != 1:
            raise Failure(path, "expected a list of class ids, got an array of shape %s"
                          % (obj.shape,))
        items = list(obj)
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    else:
        raise Failure(path, "expected a list of class ids, got %s" % type(obj).__name__)
    if not items:
        raise Failure(path, "lists no classes")
    ids, seen = [], set()
    for i, v in enumerate(items):
        c = class_id(v, path, "entry %d" % i)
        if c in seen:
            raise Failure(path, "lists class %d twice" % c)
        seen.add(c)
        ids.append(c)
    return ids


def class_dict(obj, path):
    if not isinstance(obj, dict):
        raise Failure(path, "expected a dict {class id: [vectors]}, got %s" % type(obj).__name__)
    out = {}
    for key, value in obj.items():
        c = class_id(key, path, "key %r" % (key,))
        if c in out:
            raise Failure(path, "class %d appears twice among the keys" % c)
        out[c] = value
    return out


def class_vectors(value, path, cls):
    """A class's vectors as a 2-D float64 array, one row per vector, in the stored order."""
    if isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype != object:
        rows = list(value)
    elif isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype == object:
        rows = list(value)
    elif isinstance(value, (list, tuple)):
        rows = list(value)
    elif isinstance(value, np.ndarray):
        raise Failure(path, "class %d: expected a list of 1-D vectors, got an array of shape %s"
                      % (cls, value.shape))
    else:
        raise Failure(path, "class %d: expected a list of 1-D vectors, got %s"
                      % (cls, type(value).__name__))
    if not rows:
        raise Failure(path, "class %d has no vectors" % cls)
    out = []
    for i, v in enumerate(rows):
        a = np.asarray(v)
        if a.ndim != 1:
            raise Failure(path, "class %d: vector %d has shape %s; expected a 1-D vector"
                          % (cls, i, a.shape))
        if a.dtype.kind not in "biuf":
            raise Failure(path, "class %d: vector %d has dtype %s; expected numbers"
                          % (cls, i, a.dtype))
        if out and a.shape[0] != out[0].shape[0]:
            raise Failure(path, "class %d: vector %d has %d values but vector 0 has %d"
                          % (cls, i, a.shape[0], out[0].shape[0]))
        out.append(a.astype(np.float64))
    return np.stack(out)


def features_of(vectors_by_class, classes, path):
    """Rows of every class in `classes` order, as float32, with their labels."""
    blocks, labels, dim, dim_class = [], [], None, None
    for c in classes:
        m = vectors_by_class[c]
        if dim is None:
            dim, dim_class = m.shape[1], c
        elif m.shape[1] != dim:
            raise Failure(path, "class %d has %d-d vectors but class %d has %d-d"
                          % (c, m.shape[1], dim_class, dim))
        if dim == 0:
            raise Failure(path, "class %d has vectors of length 0" % c)
        f = m.astype("<f4")
        bad = ~np.isfinite(f)
        if bad.any():
            r, k = np.argwhere(bad)[0]
            raise Failure(path, "class %d: vector %d holds %r at position %d, which is not a "
                          "finite float32" % (c, r, m[r, k], k))
        blocks.append(f)
        labels.extend([c] * f.shape[0])
    return np.ascontiguousarray(np.concatenate(blocks)), np.asarray(labels, dtype="<i8")


def check_target(path):
    """An existing target may be replaced only when it is a dataset folder."""
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        raise Failure(path, "exists and is not a folder; refusing to replace it")
    if os.path.isdir(path):
        for entry in os.listdir(path):
            if entry not in DATASET_FILES:
                raise Failure(path, "exists and holds '%s', which is not part of a dataset "
                              "folder; refusing to replace it" % entry)


def write_and_check(tmp, arrays, meta):
    for name, a in arrays.items():
        np.save(os.path.join(tmp, name), a, allow_pickle=False)
    with open(os.path.join(tmp, "dataset.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    # Read everything back before it takes the final name.
    for name, a in arrays.items():
        path = os.path.join(tmp, name)
        b = np.load(path, allow_pickle=False)
        if b.dtype != a.dtype or b.shape != a.shape or not np.array_equal(a, b):
            raise Failure(path, "reads back different from what was written")
    with open(os.path.join(tmp, "dataset.json")) as f:
        if json.load(f) != meta:
            raise Failure(os.path.join(tmp, "dataset.json"), "reads back different")


def move_into_place(tmp, target):
    if os.path.isdir(target):
        old = tempfile.mkdtemp(prefix=os.path.basename(target) + ".old-",
                               dir=os.path.dirname(target))
        os.rmdir(old)
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


def convert_folder(src, dst, name):
    if not os.path.isdir(src):
        raise Failure(src, "input folder not found")
    paths = {k: os.path.join(src, k + ".pkl")
             for k in ("txt_embed_dict", "image_embed_dict", "trainids", "testids")}
    for p in paths.values():  # all four present before anything is unpickled
        if not os.path.isfile(p):
            raise Failure(p, "not found")
    dst = os.path.normpath(dst)
    check_target(dst)

    warn("unpickling can run code stored in the file; convert only folders from a source "
         "you trust")
    texts = class_dict(load_pickle(paths["txt_embed_dict"]), paths["txt_embed_dict"])
    images = class_dict(load_pickle(paths["image_embed_dict"]), paths["image_embed_dict"])
    train = id_list(load_pickle(paths["trainids"]), paths["trainids"])
    test = id_list(load_pickle(paths["testids"]), paths["testids"])

    train_set = set(train)
    for c in test:
        if c in train_set:
            raise Failure(paths["testids"], "class %d is also in %s" % (c, paths["trainids"]))
    for ids_name, ids in (("trainids", train), ("testids", test)):
        for c in ids:
            for dict_name, d in (("image_embed_dict", images), ("txt_embed_dict", texts)):
                if c not in d:
                    raise Failure(paths[ids_name], "class %d has no entry in %s"
                                  % (c, paths[dict_name]))
    classes = train + test
    image_vectors = {c: class_vectors(images[c], paths["image_embed_dict"], c) for c in classes}
    text_vectors = {c: class_vectors(texts[c], paths["txt_embed_dict"], c) for c in classes}
    image_features, image_labels = features_of(image_vectors, classes, paths["image_embed_dict"])
    text_features, text_labels = features_of(text_vectors, classes, paths["txt_embed_dict"])

    skipped = (set(images) | set(texts)) - set(classes)
    if skipped:
        note("%d classes of the dicts are in neither trainids nor testids; left out: %s"
             % (len(skipped), sorted(skipped)[:10]))

    meta = {"name": name or os.path.basename(dst), "train_classes": train, "test_classes": test}
    arrays = {"image_features.npy": image_features, "image_labels.npy": image_labels,
              "text_features.npy": text_features, "text_labels.npy": text_labels}
    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(dst) + ".tmp-", dir=parent)
    try:
        write_and_check(tmp, arrays, meta)
        move_into_place(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    note("wrote %s: %d train + %d test classes; %d images (%d-d), %d texts (%d-d)"
         % (dst, len(train), len(test), image_features.shape[0], image_features.shape[1],
            text_features.shape[0], text_features.shape[1]))


def label_vector(obj, path):
    a = np.asarray(obj)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise Failure(path, "expected a vector of labels, got shape %s" % (a.shape,))
    if a.size == 0:
        raise Failure(path, "holds no labels")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.floor(a)):
            i = int(np.argmax(~np.isfinite(a) | (a != np.floor(a))))
            raise Failure(path, "label %r at row %d is not an integer" % (a[i], i))
    elif a.dtype.kind not in "biu":
        raise Failure(path, "labels have dtype %s; expected integers" % a.dtype)
    if a.dtype.kind == "u" and a.size and int(a.max()) > INT64_MAX:
        raise Failure(path, "a label is outside int64")
    return np.ascontiguousarray(a.astype("<i8"))


def convert_gazsl_labels(folder):
    if not os.path.isdir(folder):
        raise Failure(folder, "folder not found")
    found = [s for s in GAZSL_LABEL_STEMS if os.path.isfile(os.path.join(folder, s + ".pkl"))]
    if not found:
        raise Failure(folder, "holds none of %s" % ", ".join(s + ".pkl" for s in GAZSL_LABEL_STEMS))
    warn("unpickling can run code stored in the file; convert only files from a source you "
         "trust")
    labels = {}
    for stem in found:
        path = os.path.join(folder, stem + ".pkl")
        labels[stem] = label_vector(load_pickle(path), path)
    tmps = {}
    try:
        for stem, a in labels.items():
            fd, tmp = tempfile.mkstemp(prefix=stem + ".npy.tmp-", dir=folder)
            tmps[stem] = tmp
            with os.fdopen(fd, "wb") as f:
                np.save(f, a, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            b = np.load(tmp, allow_pickle=False)
            if b.dtype != a.dtype or not np.array_equal(a, b):
                raise Failure(tmp, "reads back different from what was written")
        for stem, tmp in tmps.items():
            os.replace(tmp, os.path.join(folder, stem + ".npy"))
    except BaseException:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    for stem, a in labels.items():
        note("wrote %s: %d labels in %d..%d"
             % (os.path.join(folder, stem + ".npy"), a.size, a.min(), a.max()))


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other error
        self.exit(2, "%s: %s (see --help)\n" % (PROG, message))


def main(argv):
    p = Parser(prog="convert_pickles.py", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", help="folder holding the four pickles")
    p.add_argument("output", nargs="?", help="dataset folder to write")
    p.add_argument("--name", default="", help="dataset name (default: OUTPUT's folder name)")
    p.add_argument("--gazsl-labels", metavar="DIR",
                   help="convert GAZSL's labels_*.pkl in DIR to .npy beside them")
    args = p.parse_args(argv)
    try:
        if args.gazsl_labels is not None:
            if args.input or args.output:
                p.error("--gazsl-labels takes no INPUT or OUTPUT")
            convert_gazsl_labels(args.gazsl_labels)
        else:
            if not args.input or not args.output:
                p.error("INPUT and OUTPUT folders are required")
            convert_folder(args.input, args.output, args.name)
    except Failure as e:
        sys.stderr.write("%s: %s\n" % (PROG, one_line(e)))
        return 1
    except OSError as e:
        sys.stderr.write("%s: %s: %s\n" % (PROG, e.filename or "", one_line(e.strerror or e)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
