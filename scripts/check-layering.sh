#!/usr/bin/env bash
# Checks the layering of src/ against docs/layering.txt: every `#include "X/..."` in src/<m>/
# names a module listed for <m> (or <m> itself), every listed module is included somewhere in
# src/<m>/, every folder of src/ is listed, CMakeLists.txt's ecmoe_module(<m> DEPS ...) names
# exactly the listed modules, and docs/architecture.md's ```layering block is the list. Prints
# one line per violation and exits 1 if there is any.
#   scripts/check-layering.sh [repository root]
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
list="$root/docs/layering.txt"
cmake="$root/CMakeLists.txt"
[[ -f "$list" ]] || { echo "check-layering: $list not found" >&2; exit 2; }
status=0
violation() { echo "layering: $*"; status=1; }
words() { tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' '; }  # a sorted set, "a b "

declare -A allowed
while IFS= read -r line; do
  line="${line%%#*}"
  [[ "$line" =~ ^[[:space:]]*$ ]] && continue
  [[ "$line" =~ ^([a-z_]+):(.*)$ ]] || { violation "docs/layering.txt: cannot read '$line'"; continue; }
  allowed[${BASH_REMATCH[1]}]="$(words <<<"${BASH_REMATCH[2]}")"
done <"$list"

for dir in "$root"/src/*/; do
  m="$(basename "$dir")"
  if [[ -z "${allowed[$m]+set}" ]]; then
    violation "src/$m/ is not listed in docs/layering.txt"
    continue
  fi
  used=" "
  while IFS= read -r hit; do
    file="${hit%%:*}"
    dep="$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$hit")"
    [[ "$dep" == "$m" ]] && continue
    [[ -d "$root/src/$dep" ]] || continue  # not one of our modules
    [[ "$used" == *" $dep "* ]] || used+="$dep "
    [[ " ${allowed[$m]}" == *" $dep "* ]] ||
      violation "${file#"$root"/} includes $dep/ ($m -> $dep is not in docs/layering.txt)"
  done < <(grep -HE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z_]+/' -r "$dir" || true)
  for dep in ${allowed[$m]}; do
    [[ "$used" == *" $dep "* ]] || violation "$m -> $dep is listed but src/$m/ never includes $dep/"
  done
done
for m in "${!allowed[@]}"; do
  [[ -d "$root/src/$m" ]] || violation "docs/layering.txt lists $m, which is no folder of src/"
done

# CMakeLists.txt: ecmoe_module(<m> DEPS ...) names exactly the listed modules, each declared on
# an earlier line (ecmoe_module skips a dependency that is not a target yet).
declared=" "
while IFS= read -r line; do
  [[ "$line" =~ ^ecmoe_module\(([a-z_]+)(.*)\)$ ]] || continue
  m="${BASH_REMATCH[1]}"
  declared+="$m "
  [[ "${BASH_REMATCH[2]}" == *'${modules}'* ]] && continue  # cli: every module
  for dep in $(grep -oE 'ecmoe_[a-z_]+' <<<"${BASH_REMATCH[2]}" | sed 's/^ecmoe_//' || true); do
    [[ "$declared" == *" $dep "* ]] ||
      violation "CMakeLists.txt: ecmoe_module($m) depends on $dep, declared later (so skipped)"
  done
  deps="$(grep -oE 'ecmoe_[a-z_]+' <<<"${BASH_REMATCH[2]}" | sed 's/^ecmoe_//' | words || true)"
  [[ "$deps" == "${allowed[$m]-}" ]] ||
    violation "CMakeLists.txt: ecmoe_module($m) DEPS name {${deps% }}, docs/layering.txt {${allowed[$m]% }}"
done <"$cmake"

# docs/architecture.md: its ```layering block is the list itself.
doc="$root/docs/architecture.md"
listed="$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list")"
drawn="$(sed -n '/^```layering$/,/^```$/p' "$doc" | sed '1d;$d')"
[[ "$listed" == "$drawn" ]] ||
  violation "docs/architecture.md: its \`\`\`layering block differs from docs/layering.txt"

[[ $status == 0 ]] && echo "layering: src/ follows docs/layering.txt"
exit $status
