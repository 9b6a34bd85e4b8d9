#!/usr/bin/env python3
"""Parse what api_stats_helper prints (stats_helper.c) and check its shape.

  check_stats.py HELPER json   smp_stats_json's text: strict JSON (json.loads), schema version 1,
                               every member papers/design.md lists, the heap and type names that
                               need escaping read back exactly, the types' counts and sizes.
Exits 1 with a message on the first check that fails.
"""
import json
import subprocess
import sys

ODD_HEAP = 'req"uest\\ \x01\ufffd \u00e9'  # \xff is not UTF-8: U+FFFD
ODD_TYPE = 'odd "name"\\\n\x01\ufffd'
TOTALS = ['in_use', 'cached', 'free', 'dirty', 'mapped', 'resident', 'purged', 'purges',
          'mappings', 'chunks_unmapped', 'threads', 'percpu', 'background', 'cpus', 'cache_slots',
          'limit', 'held', 'failures', 'heaps', 'reserve_size', 'reserve_in_use', 'huge_cached']
PER_HEAP = [k for k in TOTALS if k not in (
    'threads', 'percpu', 'background', 'cpus', 'cache_slots', 'heaps', 'reserve_size',
    'reserve_in_use')]


def fail(what):
    print('check_stats: FAIL: ' + what)
    sys.exit(1)


def run(helper, mode):
    p = subprocess.run([helper, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if p.returncode != 0:
        fail('%s %s exited %d: %s' % (helper, mode, p.returncode, p.stderr.decode(errors='replace')))
    return p.stdout


def expect(cond, what):
    if not cond:
        fail(what)


def check_json(text):
    try:
        doc = json.loads(text.decode('utf-8'))  # strict: invalid UTF-8 or JSON raises
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail('not JSON: %s\n%s' % (e, text[:2000]))
    expect(doc.get('version') == 1, 'schema version %r' % doc.get('version'))
    for k in ['smpalloc', 'frontend', 'totals', 'heaps', 'caches', 'decay', 'options', 'types',
              'busy']:
        expect(k in doc, 'no member %s' % k)
    expect(list(doc['totals']) == TOTALS, 'totals: %s' % list(doc['totals']))
    heaps = doc['heaps']
    expect(len(heaps) == doc['totals']['heaps'], '%d heaps listed, totals.heaps %d' % (
        len(heaps), doc['totals']['heaps']))
    expect(heaps[0]['name'] == 'default' and heaps[0]['default'], 'the default heap is not first')
    for h in heaps:
        for k in PER_HEAP:
            expect(isinstance(h.get(k), int), 'heap %r lacks %s' % (h.get('name'), k))
    expect([h['name'] for h in heaps].count(ODD_HEAP) == 1,
           'the oddly named heap reads back as %r' % [h['name'] for h in heaps])
    caches = doc['caches']
    expect(caches['kind'] in ('percpu', 'thread'), 'caches.kind %r' % caches['kind'])
    if caches['kind'] == 'percpu':
        expect(all(set(c) == {'index', 'cached', 'budget', 'capacity', 'hits', 'misses',
                              'restarts'} for c in caches['cpu']), 'caches.cpu: %r' % caches)
    for k in ['decay_ms', 'purge', 'dirty', 'dirty_bound', 'purged', 'purges', 'passes',
              'background']:
        expect(k in doc['decay'], 'decay lacks %s' % k)
    expect(doc['options'].get('cache_size', 0) > 0 and 'stats_signal' in doc['options'],
           'options: %r' % doc['options'])
    types = {t['name']: t for t in doc['types']}
    expect(ODD_TYPE in types, 'the oddly named type reads back as %r' % list(types))
    odd, plain = types[ODD_TYPE], types.get('plain')
    expect(odd['description'] == 'blocks named oddly, \u00e9', 'description %r' % odd['description'])
    expect(odd['blocks'] == 2 and odd['requests'] == 2 and odd['frees'] == 0, 'odd: %r' % odd)
    expect(odd['sizes'] == sorted(odd['sizes']) and len(odd['sizes']) == 2 and odd['large'] == 0,
           'odd sizes: %r' % odd)
    expect(plain is not None and plain['blocks'] == 2 and plain['requests'] == 3 and
           plain['frees'] == 1 and plain['large'] == 1, 'plain: %r' % plain)
    expect(plain['in_use'] >= 5000 + 100000 and plain['high_water'] >= plain['in_use'],
           'plain bytes: %r' % plain)
    expect(doc['busy'] == 0, 'busy %r in a quiet process' % doc['busy'])
    return doc


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ('json',):
        fail('usage: check_stats.py HELPER json')
    helper, mode = sys.argv[1], sys.argv[2]
    doc = check_json(run(helper, 'json'))
    print('check_stats: json: %d heaps, %d types, ok' % (len(doc['heaps']), len(doc['types'])))


main()
