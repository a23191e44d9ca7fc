#!/usr/bin/env bash
# Builds the release binary and runs the Swift vs PyTorch (and OpenVINO) SD 1.5 comparison
# (Scripts/bench/compare.py), then, with --whole-pipeline, the whole 20-step 512x512 txt2img engine against
# engine (Scripts/bench/whole_pipeline.py; it makes the random SD 1.5 folder and its OpenVINO export first,
# once, with Scripts/bench/make_sd15_folder.py).
# Usage: bash Scripts/bench/compare.sh [--runs N] [--only CASE ...] [--openvino] [--bf16]
#                                      [--whole-pipeline [whole_pipeline.py options: --runs N --engines ...]]
# Options before --whole-pipeline go to compare.py, those after it to whole_pipeline.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
REF_PY="${REF_PY:-$HOME/.sd-ref-venv/bin/python}"
OV_PY="${OV_PY:-$HOME/.sd-ov-venv/bin/python}"
compare_args=() whole_args=() whole=0
for a in "$@"; do
    if [ "$a" = "--whole-pipeline" ]; then whole=1
    elif [ $whole = 1 ]; then whole_args+=("$a")
    else compare_args+=("$a"); fi
done
swift build -c release --product sd >/dev/null
python3 Scripts/bench/compare.py --python "$REF_PY" --ov-python "$OV_PY" ${compare_args[@]+"${compare_args[@]}"}
if [ $whole = 1 ]; then
    echo
    ov=()
    if [ -x "$OV_PY" ]; then ov=(--openvino --ov-python "$OV_PY"); else echo "no $OV_PY: OpenVINO engines skipped" >&2; fi
    "$REF_PY" Scripts/bench/make_sd15_folder.py ${ov[@]+"${ov[@]}"}
    python3 Scripts/bench/whole_pipeline.py --torch-python "$REF_PY" --ov-python "$OV_PY" ${whole_args[@]+"${whole_args[@]}"}
fi
