#!/usr/bin/env bash
# What compiling the allocator's pure core with mypyc would buy, without changing how chargebus is built or run:
# compiles the core modules into a scratch folder, then runs bench/allocator_scale.py against the compiled modules
# and against the plain sources, alternately, on the same machine in the same run. Needs gcc and Python's headers.
#
#     bash bench/allocator_compiled.sh [rounds]      (default 2: compiled, plain, compiled, plain)
set -euo pipefail
cd "$(dirname "$0")/.."
project="$PWD"
uv="${UV:-$project/.tools/venv/bin/uv}"
rounds="${1:-2}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp -r services/allocator/src/chargebus_allocator "$scratch/"
files=()
for module in allocate fairshare admission circuits budget hysteresis reasons model site; do
  files+=("chargebus_allocator/$module.py")
done
(cd "$scratch" && MYPYPATH="$project/shared/src" "$uv" run --project "$project" --frozen --with setuptools \
  mypyc "${files[@]}" >"$scratch/build.log" 2>&1) || { tail -20 "$scratch/build.log"; exit 1; }
for round in $(seq "$rounds"); do
  echo "# round $round: compiled with mypyc"
  PYTHONPATH="$scratch" "$uv" run --frozen python -c \
    'import runpy, sys, chargebus_allocator.allocate as a; assert a.__file__.endswith(".so"), a.__file__; sys.argv = ["allocator_scale.py"]; runpy.run_path("bench/allocator_scale.py", run_name="__main__")'
  echo "# round $round: plain sources"
  "$uv" run --frozen python bench/allocator_scale.py
done
