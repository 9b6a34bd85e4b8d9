#!/usr/bin/env python3
"""Parse what api_stats_helper prints (stats_helper.c) and check its shape.

  check_stats.py HELPER json   smp_stats_json's text: strict JSON (json.loads), schema version 1,
                               every member papers/design.md lists, the heap and type names that
                               need escaping read back exactly, the types' counts and sizes.
  check_stats.py HELPER xml    malloc_info's text: well-formed XML (xml.etree) in glibc's shape,
                               a <heap> per heap the JSON lists (nr 0, 1, ...), each with its
                               <sizes>, totals fast and rest, system current and max, aspace
                               total and mprotect; after them the sums, with mmap (the huge block).
Exits 1 with a message on the first check that fails.
"""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

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


def check_totals_of(node, where, mmap):
    kinds = [(t.get('type')) for t in node.findall('total')]
    expect(kinds == (['fast', 'rest', 'mmap'] if mmap else ['fast', 'rest']),
           '%s: totals %r' % (where, kinds))
    for t in node.findall('total'):
        int(t.get('count')), int(t.get('size'))
    expect([(s.tag, s.get('type')) for s in node if s.tag in ('system', 'aspace')] ==
           [('system', 'current'), ('system', 'max'), ('aspace', 'total'), ('aspace', 'mprotect')],
           '%s: system/aspace lines' % where)
    return {t.get('type'): (int(t.get('count')), int(t.get('size'))) for t in node.findall('total')}


def check_xml(text, doc):
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        fail('not XML: %s\n%s' % (e, text[:2000]))
    expect(root.tag == 'malloc' and root.get('version') == '1', 'root %s %r' % (root.tag, root.attrib))
    heaps = root.findall('heap')
    expect(len(heaps) == len(doc['heaps']), '%d <heap>, %d heaps' % (len(heaps), len(doc['heaps'])))
    expect([h.get('nr') for h in heaps] == [str(i) for i in range(len(heaps))], 'heap numbers')
    fast = rest = 0
    for h in heaps:
        where = 'heap %s' % h.get('nr')
        sizes = h.find('sizes')
        expect(sizes is not None, where + ': no <sizes>')
        count = 0
        for s in sizes.findall('size'):
            lo, hi, total, n = (int(s.get(k)) for k in ('from', 'to', 'total', 'count'))
            expect(1 <= lo <= hi and n > 0 and total == n * hi, '%s: size %r' % (where, s.attrib))
            count += n
        t = check_totals_of(h, where, False)
        expect(count == t['fast'][0] + t['rest'][0], '%s: %d blocks in <sizes>, fast + rest %d' % (
            where, count, t['fast'][0] + t['rest'][0]))
        fast += t['fast'][0]
        rest += t['rest'][0]
    t = check_totals_of(root, 'malloc', True)
    expect(t['fast'][0] == fast and t['rest'][0] == rest, 'the sums are not the heaps\' sums')
    expect(t['mmap'][0] >= 1 and t['mmap'][1] >= 5 << 20, 'mmap: %r (a 5 MiB block is live)' % (
        t['mmap'],))
    return heaps


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ('json', 'xml'):
        fail('usage: check_stats.py HELPER json|xml')
    helper, mode = sys.argv[1], sys.argv[2]
    doc = check_json(run(helper, 'json'))
    if mode == 'json':
        print('check_stats: json: %d heaps, %d types, ok' % (len(doc['heaps']), len(doc['types'])))
    else:
        heaps = check_xml(run(helper, 'xml'), doc)
        print('check_stats: xml: %d heaps, ok' % len(heaps))


main()
