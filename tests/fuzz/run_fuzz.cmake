# cmake -DFUZZER=<fuzz_ops> -DCORPUS=<seed dir> -DWORKDIR=<dir> -DSECONDS=<n> -P run_fuzz.cmake
# Copies the committed corpus into WORKDIR (fresh each run) and fuzzes that copy with one job
# for SECONDS seconds; fails if libFuzzer reports a crash, leak, timeout or out-of-memory.
# Crash inputs are written to WORKDIR/artifacts/.
file(REMOVE_RECURSE ${WORKDIR})
file(MAKE_DIRECTORY ${WORKDIR}/artifacts)
file(COPY ${CORPUS}/ DESTINATION ${WORKDIR}/corpus)
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -rss_limit_mb=2048 -malloc_limit_mb=1024
    -max_len=2048 -timeout=20 -print_final_stats=1
    -artifact_prefix=${WORKDIR}/artifacts/ ${WORKDIR}/corpus
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzz_ops: libFuzzer exited with ${rc}; inputs in ${WORKDIR}/artifacts")
endif()
