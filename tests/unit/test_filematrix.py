"""Instances from files (config/filematrix.py): the glob a pattern lists, the values
it reads back from an instance's name, the folders the fast path must stat."""
from __future__ import annotations

from nodefile.config import filematrix


def test_the_glob_of_a_pattern_keeps_literal_glob_characters_literal():
    assert filematrix.glob_of("books/{book}.txt") == "books/*.txt"
    assert filematrix.glob_of("data/{year}/{name}.csv") == "data/*/*.csv"
    assert filematrix.glob_of("raw[1]/{x}?.txt") == "raw[[]1]/*[?].txt"
    assert filematrix.glob_of("a/{{b}}/{x}") == "a/{b}/*"


def test_a_scan_reads_wildcard_values_within_one_folder_level(tmp_path):
    for rel in ("books/abyss.txt", "books/isles.txt", "books/.hidden.txt", "books/sub/deep.txt",
                "books/Upper.txt", "books/notes.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    glob, files, values = filematrix.scan(str(tmp_path), "books/{book}.txt", {"book": "[a-z]+"})
    assert glob == "books/*.txt"
    assert files == ("books/Upper.txt", "books/abyss.txt", "books/isles.txt")
    assert values == [{"book": "abyss"}, {"book": "isles"}]


def test_the_folders_a_glob_walks_through(tmp_path):
    for rel in ("data/2020/a.csv", "data/2021/b.csv", "data/readme"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    assert filematrix.scan_folders(str(tmp_path), "data/*/*.csv") == {".", "data", "data/2020", "data/2021"}
    assert filematrix.scan_folders(str(tmp_path), "*.csv") == {"."}


def test_instance_values_read_back_from_the_name():
    assert filematrix.instance_values("count[book=abyss]", "count", ["book"]) == {"book": "abyss"}
    assert filematrix.instance_values("fit[model=a,b,seed=1]", "fit", ["model", "seed"]) == \
        {"model": "a,b", "seed": "1"}
    assert filematrix.instance_values("other[book=x]", "count", ["book"]) is None
    assert filematrix.instance_values("count[name=x]", "count", ["book"]) is None
