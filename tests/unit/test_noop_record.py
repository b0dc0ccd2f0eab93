"""fastpath's pure helpers: which recorded stats differ, and membership in the sorted path list."""
import random
import struct

from nodefile import fastpath


def _packed(stats):
    return b"".join(struct.pack("qqqq", *s, 0) for s in stats)  # (mtime, size, inode, ctime)


def test_differing_finds_exactly_the_changed_entries():
    rng = random.Random(7)
    old = [(rng.randrange(1 << 40), rng.randrange(1000), i) for i in range(5000)]
    new = list(old)
    changed = sorted(rng.sample(range(5000), 13)) + [0, 4999]  # and the two ends
    for i in changed:
        new[i] = (new[i][0] + 1, new[i][1], new[i][2])
    assert fastpath.differing(_packed(new), _packed(old), 100) == sorted(set(changed))


def test_differing_stops_after_the_limit():
    old = [(i, i, i) for i in range(1000)]
    new = [(i + 1, i, i) for i in range(1000)]
    assert len(fastpath.differing(_packed(new), _packed(old), 11)) == 11
    assert fastpath.differing(_packed(old), _packed(old), 11) == []


def test_within_checks_every_item_against_the_sorted_list():
    plist = sorted(f"src/s{i}" for i in range(100))
    assert fastpath._within(plist, {"src/s5", "src/s99"})
    assert not fastpath._within(plist, {"src/s5", "src/s100"})
    assert fastpath._within(plist, set())


def test_the_simple_build_parser_agrees_with_argparse():
    from nodefile import cli
    full = cli.make_parser()
    for argv in (["build"], ["build", "-j", "2"], ["build", "-j2", "a", "b"], ["build", "--jobs=3", "-k", "-q"],
                 ["build", "--jobs", "4", "t"], ["build", "-v", "-vv", "x"], ["build", "--keep-going", "--quiet"]):
        simple = cli._simple_build(argv)
        assert simple is not None, argv
        assert vars(simple) == vars(full.parse_args(argv)), argv
    for argv in (["build", "-n"], ["build", "-j"], ["build", "-j", "x"], ["build", "--set", "a=1"], ["status"],
                 ["build", "-C", "d"], ["build", "--bogus"], [], ["build", "-jx"]):
        assert cli._simple_build(argv) is None, argv
