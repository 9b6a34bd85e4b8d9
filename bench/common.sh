# Sourced by bench/compare.sh and ci/bench.sh, the two front ends of bench/compare.py: the
# allocators they know, with where each one's library is, and the record of their command line.
# bench_invocation NAME ARGS...  prints NAME ARGS as typed (quoting only the words that need it),
#   for the results' metadata.
# bench_allocators PROGRAM LIB [LIST]  sets the array bench_libs to the --lib NAME=PATH[@VAR=VALUE]
#   options of the allocators in the comma list LIST (empty: all of bench_all_allocators), and
#   bench_no_glibc to (--no-glibc) unless LIST names glibc. LIB is smpalloc's library; smpalloc is
#   always first (the base of the ratios), named or not. A peer that is not installed is left out
#   with a note on stderr; an unknown name is an error of PROGRAM's (exit 2).
# The peers are Debian's packages (ci/bench.sh installs them); smpalloc-thread is smpalloc with
# its per-thread front end. Debian's tcmalloc is gperftools' (per-thread caches), not Google's
# per-CPU tcmalloc; tbb is Intel oneTBB's scalable allocator, preloaded through its proxy
# library, which replaces the malloc family.

bench_all_allocators=glibc,smpalloc,smpalloc-thread,jemalloc,mimalloc,tcmalloc,tbb

bench_invocation() {
  local line=$1 word
  shift
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_,./=:@%+-]+$ ]]; then line+=" $word"
    else line+=" $(printf '%q' "$word")"; fi
  done
  echo "$line"
}

bench_allocators() {
  local program=$1 lib=$2 arch a wanted file
  # dpkg-architecture is dpkg-dev's, which an installed smpalloc-tools may lack.
  arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
  local -A path=(
    [smpalloc-thread]="$lib@SMPALLOC_OPTIONS=frontend:thread"
    [jemalloc]=/usr/lib/$arch/libjemalloc.so.2
    [mimalloc]=/usr/lib/$arch/libmimalloc.so.2
    [tcmalloc]=/usr/lib/$arch/libtcmalloc_minimal.so.4
    [tbb]=/usr/lib/$arch/libtbbmalloc_proxy.so.2
  )
  local -A package=([jemalloc]=libjemalloc2 [mimalloc]=libmimalloc2.0
                    [tcmalloc]=libtcmalloc-minimal4 [tbb]=libtbbmalloc2)
  IFS=, read -r -a wanted <<<"${3:-$bench_all_allocators}"
  bench_libs=(--lib "smpalloc=$lib") bench_no_glibc=(--no-glibc)
  for a in "${wanted[@]}"; do
    case $a in
      glibc) bench_no_glibc=() ;;
      smpalloc) ;;
      smpalloc-thread | jemalloc | mimalloc | tcmalloc | tbb)
        file=${path[$a]%%@*}
        if [ -e "$file" ]; then bench_libs+=(--lib "$a=${path[$a]}")
        else
          [ -z "${package[$a]:-}" ] || file+="; apt-get install ${package[$a]}"
          echo "note: $a is not installed ($file); left out" >&2
        fi ;;
      *) echo "$program: unknown allocator $a (known: $bench_all_allocators)" >&2; exit 2 ;;
    esac
  done
}
