#!/bin/sh
# ctest's check of examples/subsystems: it exits 0, its table lists its three types with the
# counts its code implies (150 of 300 connections left, no request buffer once every request's
# heap is destroyed), and nothing is reported still allocated at exit.
out=$("$1" 300 2>&1) || { echo "$out"; echo "subsystems exited with $?"; exit 1; }
echo "$out"
echo "$out" | grep -Eq '^cache +[0-9]+ blocks' || { echo "no cache line"; exit 1; }
echo "$out" | grep -Eq '^conn +150 blocks' || { echo "conn: want 150 blocks"; exit 1; }
echo "$out" | grep -Eq '^reqbuf +0 blocks +0 bytes' || { echo "reqbuf: want 0 blocks"; exit 1; }
if echo "$out" | grep -q 'still allocated'; then echo "a type was reported at exit"; exit 1; fi
exit 0
