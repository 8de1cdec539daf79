#!/usr/bin/env bash
# Measures `zscrgan_cuda retrieve` on the CPU over a gallery of 1,000,000 x 1,024 float32
# vectors (a 4 GB .npy written into a temporary folder and deleted afterwards): wall time and
# peak resident memory (/usr/bin/time -v) for two chunk sizes. The gallery is streamed in chunks,
# so peak memory should follow chunk_rows (and the model), not the gallery's 3.8 GiB.
#
# Usage: tools/measure_retrieve_memory.sh            (after tools/build.sh)
# Settings (environment): ROWS (1000000), QUERIES (1000), TOP_K (50), CHUNKS ("65536 16384"),
#   ZSCRGAN_BIN (build/zscrgan_cuda), TMPDIR (where the gallery goes; needs ~4.2 GB free).
# Needs /usr/bin/time and a python3 with numpy on PATH (it writes the gallery in pieces).
#
# The checkpoint comes from a one-round training run on the synthetic dataset at the published
# network sizes with 1024-wide texts and images: its quality is irrelevant here, its size is not.
# The gallery is read through the page cache, which does not count towards the resident size.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
DIM=1024
QUERIES=${QUERIES:-1000}
TOP_K=${TOP_K:-50}
CHUNKS=${CHUNKS:-"65536 16384"}
BIN=${ZSCRGAN_BIN:-build/zscrgan_cuda}

[ -x "$BIN" ] || { echo "error: $BIN not found; build first (tools/build.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing (Debian: apt-get install -y time)" >&2; exit 1; }
python3 -c 'import numpy' 2>/dev/null ||
  { echo "error: python3 on PATH has no numpy (pip install numpy, or apt-get install -y python3-numpy for /usr/bin/python3)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/zscrgan-measure.XXXXXX")
trap 'rm -rf "$work"' EXIT
need=$(( ROWS * DIM * 4 + QUERIES * DIM * 4 + (256 << 20) ))
avail=$(df --output=avail -B1 "$work" | tail -1)
if [ "$avail" -lt "$need" ]; then
  echo "error: $work has $((avail >> 20)) MiB free, the gallery needs $((need >> 20)) MiB" >&2
  exit 1
fi

echo "== checkpoint: one round at the published sizes, text and image width $DIM"
cat > "$work/config.json" <<EOF
{"dataset": "synthetic", "synthetic": {"text_dim": $DIM, "image_dim": $DIM},
 "rounds": 1, "e_step_iters": 1, "n_critic": 1, "m_step_iters": 1,
 "device": "cpu", "output_dir": "$work/run"}
EOF
"$BIN" --config "$work/config.json" > "$work/train.log"
checkpoint="$work/run/checkpoints/last.safetensors"
[ -f "$checkpoint" ] || { echo "error: training wrote no $checkpoint" >&2; cat "$work/train.log" >&2; exit 1; }

echo "== data: $QUERIES texts and a $ROWS x $DIM float32 gallery in $work"
python3 - "$work" "$ROWS" "$QUERIES" "$DIM" <<'EOF'
import sys
import numpy as np
from numpy.lib.format import open_memmap
work, rows, queries, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
np.save(f"{work}/texts.npy", rng.standard_normal((queries, dim), dtype=np.float32))
gallery = open_memmap(f"{work}/gallery.npy", mode="w+", dtype="<f4", shape=(rows, dim))
step = 65536
for first in range(0, rows, step):
    n = min(step, rows - first)
    # Non-negative, like pooled CNN features.
    gallery[first:first + n] = rng.random((n, dim), dtype=np.float32)
gallery.flush()
del gallery
EOF
ls -l "$work/gallery.npy"

export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
printf '\n%-12s %12s %16s\n' chunk_rows "wall (s)" "peak RSS (MiB)"
for chunk in $CHUNKS; do
  /usr/bin/time -v "$BIN" retrieve --checkpoint "$checkpoint" --texts "$work/texts.npy" \
    --gallery "$work/gallery.npy" --top-k "$TOP_K" --out "$work/R.json" --chunk-rows "$chunk" \
    --device cpu > "$work/retrieve.log" 2> "$work/time.txt" ||
    { cat "$work/retrieve.log" "$work/time.txt" >&2; exit 1; }
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
           n = split($2, p, ":"); s = 0; for (i = 1; i <= n; ++i) s = s * 60 + p[i]; print s }' "$work/time.txt")
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  printf '%-12s %12.1f %16.0f\n' "$chunk" "$wall" "$((rss_kb / 1024))"
  sed 's/^/    /' "$work/retrieve.log" | grep -E 'memory:|retrieved'
done
