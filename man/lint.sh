#!/usr/bin/env bash
# Check manual pages: groff with every warning (-ww) and, when mandoc is installed, mandoc's
# linter at level warning. Any message, or a failing tool, fails the check.
# Usage: man/lint.sh [PAGE...]   (default: every man/*.[137] next to this script)
# Exit status: 0 when every page is clean (prints "man/lint.sh: N pages clean"), 1 when a check
# printed anything or failed, 2 on a usage error (a page that does not exist, groff missing).
set -uo pipefail
me=man/lint.sh
here=$(cd "$(dirname "$0")" && pwd)

case ${1-} in
  -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

pages=("$@")
if [ ${#pages[@]} -eq 0 ]; then
  shopt -s nullglob
  pages=("$here"/*.[137])
  shopt -u nullglob
  [ ${#pages[@]} -gt 0 ] || { echo "$me: no pages in $here" >&2; exit 2; }
fi
command -v groff >/dev/null || { echo "$me: groff is not installed" >&2; exit 2; }
for page in "${pages[@]}"; do
  [ -f "$page" ] || { echo "$me: $page: no such file" >&2; exit 2; }
done
have_mandoc=0
command -v mandoc >/dev/null && have_mandoc=1
[ "$have_mandoc" = 1 ] || echo "$me: mandoc is not installed: groff only" >&2

failed=0
for page in "${pages[@]}"; do
  # groff: -z formats without output, so only diagnostics are printed; -t runs tbl first.
  out=$(groff -ww -z -t -man "$page" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    echo "$me: $page: groff (exit $rc):"
    [ -n "$out" ] && printf '%s\n' "$out"
    failed=1
  fi
  if [ "$have_mandoc" = 1 ]; then
    out=$(mandoc -T lint -W warning "$page" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
      echo "$me: $page: mandoc (exit $rc):"
      [ -n "$out" ] && printf '%s\n' "$out"
      failed=1
    fi
  fi
done

if [ $failed -ne 0 ]; then
  echo "$me: problems found" >&2
  exit 1
fi
echo "$me: ${#pages[@]} pages clean"
