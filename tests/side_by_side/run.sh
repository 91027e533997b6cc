#!/usr/bin/env bash
# Side-by-side benchmark: this program against Hugging Face diffusers (PyTorch, CPU) on the same
# full-size Stable Diffusion 1.5 architecture with random weights, on this machine, in one run.
#
#   bash tests/side_by_side/run.sh [WORK_DIR]
#
# Makes a virtual environment with torch, diffusers and transformers from PyPI (once, in
# WORK_DIR/venv), writes the model (once, WORK_DIR/sd15-random, about 4 GB), builds this
# program in release mode, then times each part in its own process, alternating the two
# implementations: the UNet per step (a guided batch of two) at 256 and 512, the VAE decode at
# 256 and 512, the text encoder. Prints one JSON line per measurement and a table of ratios.
# Environment: RUNS (default 3), SIZES (default "256 512"), PARTS (default "unet vae text").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/interconcept-bench}"
runs="${RUNS:-3}"
sizes="${SIZES:-256 512}"
parts="${PARTS:-unet vae text}"
tokenizer="${TOKENIZER_DIR:-$repo/assets/model/tokenizer}"
mkdir -p "$work"

if [ ! -x "$work/venv/bin/python" ]; then
    python3 -m venv "$work/venv"
fi
if ! "$work/venv/bin/python" -c "import torch, diffusers, transformers, safetensors" 2>/dev/null; then
    "$work/venv/bin/pip" install --quiet torch diffusers transformers safetensors numpy
fi
py="$work/venv/bin/python"
model="$work/sd15-random"
if [ ! -f "$model/model_index.json" ]; then
    echo "writing a full-size SD 1.5 with random weights to $model" >&2
    "$py" "$here/diffusers_side.py" write "$model.tmp" "$tokenizer"
    mv "$model.tmp" "$model"
fi

(cd "$repo" && cargo build --release --quiet)
bin="$repo/target/release/interconcept"

results="$work/results.jsonl"
: > "$results"
for part in $parts; do
    for size in $sizes; do
        if [ "$part" = text ] && [ "$size" != "${sizes%% *}" ]; then
            continue
        fi
        RUST_LOG=error "$bin" bench --model "$model" --part "$part" --size "$size" --runs "$runs" \
            | tee -a "$results"
        "$py" "$here/diffusers_side.py" time "$model" "$part" "$size" "$runs" | tee -a "$results"
    done
done

"$py" - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["part"], r["size"]), {})[r["implementation"]] = r
print()
print(f"{'part':<6}{'size':>6}{'ours ms':>12}{'diffusers ms':>14}{'time ratio':>12}{'ours MiB':>10}{'theirs MiB':>12}{'mem ratio':>11}")
for (part, size), pair in sorted(by.items()):
    a, b = pair.get("interconcept"), pair.get("diffusers")
    if not (a and b):
        continue
    print(f"{part:<6}{size:>6}{a['ms']:>12.0f}{b['ms']:>14.0f}{a['ms']/b['ms']:>12.2f}"
          f"{a['peak_rss_mib']:>10.0f}{b['peak_rss_mib']:>12.0f}{a['peak_rss_mib']/b['peak_rss_mib']:>11.2f}")
print("ratios are ours / diffusers: below 1 means this program is faster or smaller")
PY
