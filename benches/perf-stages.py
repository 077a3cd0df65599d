#!/usr/bin/env python3
"""Splits a citysensed CPU profile into pipeline stages (BENCHMARKS.md, "CPU profile").

    bash benches/e2e.sh --rates 100000 --runs 1 --perf   # with KEEP_WORK=1 and an unstripped build
    perf script -i <run dir>/perf.data -F comm,tid,ip,sym,dso > daemon.script
    python3 benches/perf-stages.py daemon.script [-v]

Each sample's DWARF call chain is walked leaf to root; the first frame that matches a stage's
patterns decides the stage (so malloc called by serde_json counts as allocator, a hash probe
in the aggregator as aggregator). -v lists the samples no stage claimed."""
import re, sys, collections

ALLOC = re.compile(r'^(malloc|free|cfree|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|unlink_chunk|tcache_\w+|__rust_alloc|__rust_dealloc|__rust_realloc|__libc_malloc|__libc_free|__libc_realloc|_int_free_merge_chunk|_int_free_create_chunk|_int_free_maybe_consolidate)\b')
RULES = [
    ('allocator (malloc/free)', lambda s: ALLOC.match(s)),
    ('socket read + MQTT decode (rumqttc)', lambda s: any(k in s for k in (
        'recvfrom', '__libc_recv', 'tcp_recvmsg', 'rumqttc', 'framed_impl', 'mqttbytes', 'poll_read'))),
    ('JSON mapping (serde_json + mapper)', lambda s: any(k in s for k in (
        'serde_json', 'mqtt::mapper', 'Mapper', 'map_json', 'push_fields', 'parse_rfc3339', 'epoch_auto_ns', 'fast_json', 'json_fields'))),
    ('channel hand-off (tokio mpsc)', lambda s: any(k in s for k in (
        'mpsc', 'chan::', 'batch_semaphore', 'reserve_many', 'Permit', 'bounded::'))),
    ('aggregator insert', lambda s: any(k in s for k in (
        'Aggregator', 'pipeline::', 'SeriesState', 'sketch', 'aggregate::'))),
    ('topic lookup/cache', lambda s: any(k in s for k in (
        'cache_topic', 'series_cache_key', 'resolve_topic', 'is_identifier_topic', 'hashbrown', 'HashMap', 'hash_one', 'sip::', 'Hasher'))),
    ('other: clock reads', lambda s: any(k in s for k in ('clock_gettime', 'boot_ns', 'now_ns', 'read_tsc'))),
    ('other: MQTT source glue (handle_publish/map loop)', lambda s: any(k in s for k in ('MqttSource', 'handle_publish', 'sources::Source::run', 'Reading::'))),
    ('tokio runtime/scheduler + epoll', lambda s: any(k in s for k in (
        'epoll', 'futex', 'schedule', 'sched_yield', 'finish_task_switch', 'tokio::runtime', 'park', 'mio::', 'notify::', 'Notified', 'cancellation_token', 'TaskTracker', 'select'))),
]

def samples(path):
    """Frames leaf first. perf prints, per address, the containing symbol and then its inlined
    callees innermost first: reorder so the inlined frames come before their container."""
    frames = []
    def flush_group(group):
        inl = [s for s, i in group if i]
        real = [s for s, i in group if not i]
        frames.extend(inl + real)
    group, addr = [], None
    for line in open(path, errors='replace'):
        if not line.strip():
            flush_group(group); group, addr = [], None
            if frames:
                yield frames
            frames = []
            continue
        if line[0] not in ' \t':
            frames = []
            continue
        parts = line.strip().split(' ', 1)
        if len(parts) < 2:
            continue
        inlined = parts[1].endswith('(inlined)')
        sym = re.sub(r' \([^()]*\)$', '', parts[1])
        if parts[0] != addr:
            flush_group(group); group = []
            addr = parts[0]
        group.append((sym, inlined))
    flush_group(group)
    if frames:
        yield frames

def classify(frames):
    in_agg = any('aggregate' in f or 'Aggregator' in f for f in frames)
    for f in frames:
        for name, pred in RULES:
            if pred(f):
                if name == 'topic lookup/cache' and in_agg:
                    return 'aggregator insert'
                return name
    return 'other'

def main():
    c = collections.Counter()
    other = collections.Counter()
    n = 0
    for fr in samples(sys.argv[1]):
        n += 1
        k = classify(fr)
        c[k] += 1
        if k == 'other':
            other[fr[0][:90] + ' <- ' + (fr[-3][:60] if len(fr) > 3 else '')] += 1
    print(f'samples: {n}')
    for k, v in c.most_common():
        print(f'{100*v/n:6.1f}%  {v:6d}  {k}')
    if '-v' in sys.argv:
        print('\nother, top:')
        for k, v in other.most_common(25):
            print(f'{v:5d} {k}')

main()
